"""`relrank annotate`: collect pairs for attributes in the browser; the next pair is chosen by the model."""

from __future__ import annotations

import argparse
import errno
import getpass
import ipaddress
import logging
import os
import secrets
import socket
import sys
import threading
import webbrowser

from relrank.errors import UserError

DESCRIPTION = ("Collect comparisons for your own attribute(s) in the browser: two images side by side, answered by "
               "keyboard or click. Answers are appended to DIR/pairs.csv (train on them with --dataset=pairs_csv "
               "--manual_dir=DIR). With --strategy=active the next pair is the one a ranker, refitted in the "
               "background every --retrain_every answers, is least sure of.")
LOOPBACK = "127.0.0.1"


def parser(prog: str = "relrank annotate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--images", required=True, metavar="DIR", help="the images (in DIR, or DIR/images/ when it "
                        "exists; sub-folders too); the answers go to DIR/pairs.csv, which an earlier session resumes")
    parser.add_argument("--attr", default="", help="the attribute(s) to annotate, comma-separated (switch with Tab or "
                        "the menu); attributes already in pairs.csv are added")
    parser.add_argument("--strategy", choices=["active", "random"], default="active", help="active (default): after "
                        "--warmup random pairs, the pair the ranker is least sure of (1 pick in 5 stays random); "
                        "random: random pairs")
    parser.add_argument("--warmup", type=int, default=30, help="random answers per attribute before active picks "
                        "(default: 30)")
    parser.add_argument("--retrain_every", type=int, default=20, help="answers between refits of an attribute's "
                        "ranker (default: 20)")
    parser.add_argument("--weights", default="", help="a pretrained backbone (a name or file --weights of train.py "
                        "reads); the ranker is linear on its features. Default: the packaged ImageNet "
                        "EfficientNet-Lite0 (installed with relrank); where none is installed, a randomly initialised "
                        "VGG-16 at 128 px (a weak feature, still better than random pairs; a warning says so)")
    parser.add_argument("--model", default="", help="the backbone (a train.py --model preset; default: the one "
                        "--weights names, else vgg16)")
    parser.add_argument("--image_size", type=int, default=None, help="the backbone's input size (default: the "
                        "preset's; 128 for a random-init vgg16)")
    parser.add_argument("--annotator", default="", help="the name recorded with each answer (default: your user name)")
    parser.add_argument("--repeats", action="store_true", help="ask pairs again that are already answered (several "
                        "votes per pair)")
    parser.add_argument("--host", default=LOOPBACK, help=f"the address to listen on (default: {LOOPBACK}, this "
                        f"machine only; any other needs a token)")
    parser.add_argument("--port", type=int, default=8765, help="the port (default: 8765)")
    parser.add_argument("--token", default="", help="a secret every request must carry; generated when --host is "
                        "not 127.0.0.1 and none is given")
    parser.add_argument("--no_browser", action="store_true", help="do not open a browser")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random picks (default: 0)")
    return parser


def _answers(n: int) -> str:
    return f"{n} answer{'' if n == 1 else 's'}"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_session(args):
    """The folder, its answers and the session; every check of the input, before anything is served."""
    from relrank.annotate import folder as folders
    from relrank.annotate.answers import AnswerLog
    from relrank.annotate.session import Session

    folder = folders.open_folder(args.images)
    folders.check_writable(folder)
    lock = folders.lock(folder)
    log = AnswerLog(folder.pairs_csv, set(folder.names))
    attributes = [a.strip() for a in args.attr.split(",") if a.strip()]
    if not attributes and not log.answers:
        raise UserError(f"name the attribute to annotate: --attr=NAME ({folder.pairs_csv} holds none yet)")
    features = image_features(args, folder) if args.strategy == "active" else None
    session = Session(folder, log, attributes, args.strategy, args.retrain_every, args.repeats, features, args.seed,
                      args.warmup)
    return session, lock


def image_features(args, folder):
    """The function the session's ranker gets its features from (in its thread); bad flags are refused now."""
    from relrank.annotate.features import compute_features, default_backbone, feature_config
    from relrank.model import named_weights

    model, weights, warning = default_backbone(args.model, args.weights)
    if weights and not os.path.exists(weights) and weights not in named_weights.names():
        raise UserError(f"--weights={weights}: no such file or folder, nor a weights name (efficientnet_lite0, ...: "
                        f"train.py --help lists them)")
    config = feature_config(model, weights or None, args.image_size)  # a bad --model, --weights or --image_size
    check_feature_sources(config)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"pairs are picked with {config.model}'s features at {config.image_size} px "
          f"({os.path.basename(config.weights) if config.weights else 'random init'})", file=sys.stderr)
    paths = [folder.path(n) for n in folder.names]
    return lambda progress: compute_features(paths, model, weights or None, args.image_size, progress)


def check_feature_sources(config) -> None:
    """A one-line error now, not a silent fall back to random pairs once serving: weights that do not fit the
    model, and a feature cache that is stale, damaged or not writable."""
    import tempfile

    from relrank.annotate.features import cache_file
    from relrank.model.weights import check_weights
    from relrank.train.cached_features import read_cache

    if config.weights:
        check_weights(config)
    path, key = cache_file(config)
    read_cache(path, key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tempfile.TemporaryFile(dir=os.path.dirname(path)).close()
    except OSError as error:
        raise UserError(f"the feature cache {os.path.dirname(path)} is not writable ({error.strerror}); set "
                        f"RELRANK_CACHE to a folder you can write to") from None


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound here (werkzeug would exit on a port in use): a one-line error instead."""
    try:
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (another server?); choose another with --port") from None
        if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(error, socket.gaierror):
            raise UserError(f"--host={host} is not an address of this machine ({error.strerror})") from None
        raise
    return listening


def main(argv: list[str], prog: str = "relrank annotate") -> None:
    args = parser(prog).parse_args(argv)
    from werkzeug.serving import make_server

    from relrank.annotate.server import create_app

    token = args.token or ("" if is_loopback(args.host) else secrets.token_urlsafe(16))
    listening = listen(args.host, args.port)  # before the session starts its ranker's thread
    session, _lock = build_session(args)
    port = listening.getsockname()[1]
    app = create_app(session, token, args.annotator or getpass.getuser())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request in the terminal
    server = make_server(args.host, port, app, threaded=True, fd=listening.detach())
    url = f"http://{args.host}:{port}/" + (f"?token={token}" if token else "")
    counts = session.status()["answers"]
    print(f"annotating {len(session.folder.names)} images of {session.folder.images_root} for "
          f"{', '.join(f'{a} ({_answers(counts.get(a, 0))} so far)' for a in session.attributes)}; answers go to "
          f"{session.folder.pairs_csv}\nopen {url}   (Ctrl-C stops; nothing answered is lost)", file=sys.stderr)
    sys.stderr.flush()
    if not args.no_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.serve_forever()  # until Ctrl-C (or SIGTERM), which werkzeug's loop takes as the way to stop
        print(f"stopped; {len(session.log.answers)} answers in {session.folder.pairs_csv}", file=sys.stderr)
    finally:
        server.server_close()
        session.close()
