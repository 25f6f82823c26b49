"""What every command shares: libraries kept quiet, compiled programs cached, and errors as one line."""

from __future__ import annotations

import logging
import os
import sys

from relrank.errors import Interrupted, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command
EXIT_DID_NOT_LEARN = 3  # the run ended, but its network learned nothing (relrank/train/monitor.py)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of the output went away (`| head`), as shells report it


def quiet_libraries() -> None:
    """Orbax's and TensorFlow's informational logging (absl WARNINGs on every checkpoint read) off."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def use_compilation_cache() -> None:
    """Keep compiled XLA programs between runs (JAX's persistent cache): a rerun skips most compile time.

    In $JAX_COMPILATION_CACHE_DIR when set, else ~/.cache/relrank/xla (under $XDG_CACHE_HOME when set).
    Set through JAX's environment variables, read when JAX is first imported: nothing imports it here.
    """
    cache_root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(cache_root, "relrank", "xla"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def run(main, argv) -> int:
    """Run `main`: a UserError becomes a one-line message and exit status 2; Ctrl-C or SIGTERM, status 130;
    otherwise the status `main` returns (0 if None)."""
    from relrank.train.signals import sigterm_as_keyboard_interrupt

    quiet_libraries()
    use_compilation_cache()
    try:
        with sigterm_as_keyboard_interrupt():
            status = main(argv)
    except Interrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stop quietly; output still buffered goes nowhere rather than fail again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as error:
        if "Unable to initialize backend" not in str(error):
            raise
        asked = os.environ.get("JAX_PLATFORMS", "")
        print(f"error: JAX cannot use the accelerator {'JAX_PLATFORMS=' + asked + ' asks for' if asked else 'asked for'}: "
              f"{str(error).splitlines()[0][:200]}; unset JAX_PLATFORMS to use what this machine has, or install "
              f"JAX for it (README: GPUs and TPUs)", file=sys.stderr)
        return EXIT_USER_ERROR
    return status or 0
