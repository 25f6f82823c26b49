"""relrank annotate: the JSON API through Flask's test client, the answers file (append-only, retractions,
restarts, a kill -9 during a burst), bad input, and the page in a real headless Chromium."""

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import json

import numpy as np
import pytest
from PIL import Image

from relrank.annotate import folder as folders
from relrank.annotate.answers import AnswerLog
from relrank.annotate.selection import Selector
from relrank.annotate.server import create_app
from relrank.annotate.session import Session
from relrank.errors import UserError
from relrank_datasets.pairs_csv.pairs_csv_dataset_builder import read_annotations
from relrank_datasets.sources import SourceFilesError

XSS_NAME = '"><img src=x onerror=alert(1)>.png'


def make_images(root, count, names=()):
    """`count` small PNGs (shape_00.png, ...) plus `names`, each a distinct image."""
    os.makedirs(root, exist_ok=True)
    all_names = [f"shape_{k:02d}.png" for k in range(count)] + list(names)
    for k, name in enumerate(all_names):
        Image.fromarray(np.full((16, 16, 3), (k * 7) % 256, np.uint8)).save(os.path.join(root, name))
    return all_names


def open_session(root, attributes=("warm",), strategy="random", **kwargs):
    folder = folders.open_folder(str(root))
    log = AnswerLog(folder.pairs_csv, set(folder.names))
    return Session(folder, log, list(attributes), strategy, **kwargs)


def standing(root):
    """The answers pairs.csv holds, read by the pairs_csv builder's parser (retractions applied), in order."""
    rows = read_annotations(os.path.join(root, "pairs.csv"), set(folders.open_folder(str(root)).names),
                            allow_empty=True)
    return [(r["a"], r["b"], r["attribute"], {1.0: "more", 0.0: "less", 0.5: "equal"}[r["target"]]) for r in rows]


@pytest.fixture
def api(tmp_path):
    make_images(tmp_path, 6)
    session = open_session(tmp_path, ("warm", "round"))
    client = create_app(session, annotator="ann").test_client()
    return client, session, tmp_path


def ask(client, attr="warm", **fields):
    response = client.post("/api/next", json=dict(attr=attr, **fields))
    assert response.status_code == 200, response.json
    return response.json


def test_api_answers_undo_status_and_images(api):
    client, session, root = api
    pairs = []
    for label in ("more", "less", "equal"):
        pair = ask(client)
        assert pair["attr"] == "warm" and pair["a"] != pair["b"]
        assert client.post("/api/answer", json=dict(pair, label=label)).json == {"ok": True}
        pairs.append((pair["a"], pair["b"], "warm", label))
        assert standing(root) == pairs  # on disk when acknowledged
    pair = ask(client, "round")
    assert client.post("/api/answer", json=dict(pair, label="more")).status_code == 200
    undone = client.post("/api/undo", json={}).json
    assert undone["ok"] and (undone["undone"]["a"], undone["undone"]["b"]) == (pair["a"], pair["b"])
    assert standing(root) == pairs
    lines = open(root / "pairs.csv").read().splitlines()
    assert lines[0] == "image_a,image_b,attribute,label,annotator,time"
    assert lines[-1].startswith(f"{pair['a']},{pair['b']},round,undo,ann,")  # a recorded retraction, not an edit
    # The undone pair is on offer again and can be answered again.
    assert client.post("/api/answer", json=dict(pair, attr="round", label="less")).json == {"ok": True}
    status = client.get("/api/status").json
    assert status["answers"] == {"warm": 3, "round": 1} and status["images"] == 6
    assert status["answers_this_session"] == 4 and status["pairs_per_minute"] > 0
    image = client.get("/images/shape_02.png")
    assert image.status_code == 200 and image.data == open(root / "shape_02.png", "rb").read()
    page = client.get("/").get_data(as_text=True)
    assert "relrank annotate" in page and "warm" in page


def test_every_pair_once_then_done_and_a_restart_resumes(tmp_path):
    make_images(tmp_path, 4)  # 6 pairs
    session = open_session(tmp_path)
    client = create_app(session, annotator="ann").test_client()
    seen = set()
    for _ in range(5):
        pair = ask(client)
        seen.add(frozenset((pair["a"], pair["b"])))
        client.post("/api/answer", json=dict(pair, label="more"))
    assert len(seen) == 5
    session.close()
    client = create_app(open_session(tmp_path), annotator="ann").test_client()  # a restart: the CSV is read back
    undone = client.post("/api/undo", json={}).json["undone"]  # ann's answers before the restart can be undone
    assert frozenset((undone["a"], undone["b"])) in seen and len(standing(tmp_path)) == 4
    assert client.post("/api/answer", json=dict(undone, attr="warm", label="less")).json == {"ok": True}
    last = ask(client)
    assert frozenset((last["a"], last["b"])) not in seen
    client.post("/api/answer", json=dict(last, label="less"))
    assert ask(client) == {"attr": "warm", "done": True}
    repeats = create_app(open_session(tmp_path, repeats=True)).test_client()
    assert "a" in ask(repeats)  # --repeats asks answered pairs again


def test_bad_requests_are_refused_with_a_reason(api):
    client, session, root = api
    pair = ask(client)
    cases = [
        (dict(pair, a="nope.png", label="more"), "unknown image 'nope.png'"),
        (dict(pair, attr="colour", label="more"), "unknown attribute 'colour'"),
        (dict(pair, label="bigger"), "label 'bigger' is not more, less or equal"),
        ({"attr": "warm", "a": pair["a"]}, "no string field 'b'"),
    ]
    other = [n for n in session.folder.names if n not in (pair["a"], pair["b"])]
    cases.append((dict(pair, b=other[0], label="more"), "is not on offer to this page"))
    for body, why in cases:
        response = client.post("/api/answer", json=body)
        assert response.status_code == 400 and why in response.json["error"], (body, response.json)
    malformed = client.post("/api/answer", data="{not json", content_type="application/json")
    assert malformed.status_code == 400 and "not a JSON object" in malformed.json["error"]
    assert client.post("/api/next", json={"attr": "colour"}).status_code == 400
    refused = client.get("/api/next?attr=warm")  # a GET (or HEAD) changes nothing: no pair is taken with it
    assert refused.status_code == 405 and "POST" in refused.json["error"]
    assert client.head("/api/next?attr=warm").status_code == 405
    assert client.post("/api/undo", json={}).json == {"ok": False, "error": "nothing to undo"}
    assert client.get("/api/answer").status_code == 405
    assert standing(root) == []  # nothing refused was written


def test_only_the_folders_images_are_served(tmp_path):
    secret = tmp_path / "secret.png"
    make_images(tmp_path / "outside", 1)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(secret)
    root = tmp_path / "folder"
    make_images(root, 3, [XSS_NAME])
    os.symlink(secret, root / "escape.png")
    session = open_session(root)
    assert "escape.png" not in session.folder.names and XSS_NAME in session.folder.names
    client = create_app(session).test_client()
    for path in ("/images/../secret.png", "/images/%2e%2e/secret.png", "/images/..%2fsecret.png",
                 "/images/escape.png", "/images/pairs.csv", f"/images/{tmp_path}/secret.png",
                 "/images/.relrank-annotate.lock"):
        response = client.get(path, follow_redirects=True)  # (werkzeug redirects // to /)
        assert response.status_code == 404 and response.data != secret.read_bytes(), path
    assert client.get("/images/" + XSS_NAME.replace(">", "%3E").replace('"', "%22")).status_code == 200


def test_a_token_is_required_when_set(tmp_path):
    make_images(tmp_path, 3)
    client = create_app(open_session(tmp_path), token="s3cret").test_client()
    for path in ("/", "/api/next", "/api/status", "/images/shape_00.png"):
        response = client.get(path)
        assert response.status_code == 403 and "token" in response.json["error"], path
    assert client.get("/api/status?token=wrong").status_code == 403
    assert client.get("/api/status?token=s3cret").status_code == 200
    assert client.get("/api/status", headers={"X-Relrank-Token": "s3cret"}).status_code == 200
    assert client.post("/api/undo", json={}).status_code == 403


def test_the_builder_reads_what_annotate_writes(tmp_path, data_dir):
    from relrank.data.datasets import load_dataset

    make_images(tmp_path, 8)
    session = open_session(tmp_path, ("warm",))
    for k in range(12):
        pair = session.next_pair("warm")
        session.answer("warm", pair["a"], pair["b"], ("more", "less", "equal")[k % 3], "ann")
    session.undo("ann")
    session.undo("ann")
    dataset = load_dataset("pairs_csv", data_dir=data_dir, manual_dir=str(tmp_path))
    assert dataset.attributes == ["warm"]
    counted = sum(len(dataset.pairs(split, "warm")) for split in ("train", "test")) + dataset.metadata["dropped_pairs"]
    assert counted == 10  # 12 answers, 2 retracted (images in the folder itself, no images/)


def test_retractions_in_the_builder(tmp_path):
    make_images(tmp_path, 3)
    names = set(folders.open_folder(str(tmp_path)).names)
    path = tmp_path / "pairs.csv"
    path.write_text("image_a,image_b,attribute,label,annotator\n"
                    "shape_00.png,shape_01.png,warm,more,ann\n"
                    "shape_01.png,shape_00.png,warm,more,bob\n"
                    "shape_00.png,shape_02.png,warm,less,ann\n"
                    "shape_01.png,shape_00.png,warm,undo,ann\n")  # ann's answer to the pair, whichever way round
    rows = read_annotations(str(path), names)
    assert [(r["a"], r["b"], r["target"]) for r in rows] == [("shape_01.png", "shape_00.png", 1.0),
                                                              ("shape_00.png", "shape_02.png", 0.0)]
    with open(path, "a") as f:
        f.write("shape_01.png,shape_02.png,warm,undo,ann\n")
    with pytest.raises(SourceFilesError, match=r"line 6: undoes an answer that is not there"):
        read_annotations(str(path), names)


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(UserError, match="holds 1 readable image"):
        make_images(tmp_path / "one", 1)
        (tmp_path / "one" / "broken.jpg").write_bytes(b"not a jpeg")
        folders.open_folder(str(tmp_path / "one"))
    root = tmp_path / "folder"
    make_images(root, 3)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    assert folders.open_folder(str(root)).unreadable == ("broken.jpg",)
    bad = ("image_a,image_b,attribute,label\nshape_00.png,shape_01.png,warm,more\n"
           "shape_00.png,shape_02.png,warm,bigger\n")
    (root / "pairs.csv").write_text(bad)
    with pytest.raises(UserError, match=r"(?s)line 3: label 'bigger'.*never rewrites it"):
        open_session(root)
    assert (root / "pairs.csv").read_text() == bad  # untouched
    # A file without a last line end (as Excel saves) is extended, not joined onto.
    (root / "pairs.csv").write_text(bad.splitlines()[0] + "\n" + bad.splitlines()[1])
    session = open_session(root)
    pair = session.next_pair("warm")
    session.answer("warm", pair["a"], pair["b"], "less")
    assert len(standing(root)) == 2


def test_a_read_only_folder_is_refused_before_serving(tmp_path, monkeypatch):
    make_images(tmp_path, 3)
    folder = folders.open_folder(str(tmp_path))
    os.chmod(tmp_path, 0o555)
    try:
        if os.access(tmp_path, os.W_OK):  # root writes anyway: make the probe fail as a read-only mount would
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")
            monkeypatch.setattr(folders.tempfile, "TemporaryFile", refuse)
        with pytest.raises(UserError, match=f"{tmp_path} is read-only: answers could not be saved"):
            folders.check_writable(folder)
    finally:
        os.chmod(tmp_path, 0o755)


def test_selection_avoids_taken_pairs_and_prefers_uncertain_ones():
    selector = Selector(50, "active", seed=0, warmup=0, random_share=0.0)
    scores = np.arange(50, dtype=np.float64)
    taken = {frozenset((k, k + 1)) for k in range(0, 48, 2)}
    picks = [selector.pick(scores, taken, answered=100) for _ in range(40)]
    assert not any(frozenset(p) in taken for p in picks)
    gaps = [abs(a - b) for a, b in picks]
    assert np.median(gaps) <= 3  # random pairs of 50 have a median gap of ~15
    counts = np.bincount(np.ravel(picks), minlength=50)
    assert counts.max() <= 6  # spread over the images, not one asked again and again
    random = Selector(50, "random", seed=0)
    assert np.median([abs(a - b) for a, b in (random.pick(scores, taken, 100) for _ in range(40))]) > 8
    assert Selector(2, "random").pick(None, {frozenset((0, 1))}, 0) is None


def start_server(root, *flags):
    """`relrank annotate` in a process of its own; returns (process, base URL)."""
    process = subprocess.Popen([sys.executable, "-m", "relrank", "annotate", f"--images={root}", "--no_browser",
                                "--port=0", *flags], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        found = re.search(r"open (http://\S+)", line)
        if found:
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, found.group(1).removesuffix("/")
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("the server did not start: " + "".join(lines))


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_kill_9_during_a_burst_loses_no_acknowledged_answer(tmp_path):
    make_images(tmp_path, 40)
    process, base = start_server(tmp_path, "--attr=warm,round", "--strategy=random")
    acknowledged, stop = [], threading.Event()

    def annotate(attr, label):
        while not stop.is_set():
            try:
                pair = call(f"{base}/api/next", {"attr": attr})
                if call(f"{base}/api/answer", dict(pair, label=label)) == {"ok": True}:
                    acknowledged.append((pair["a"], pair["b"], attr, label))
            except Exception:  # noqa: BLE001 - the server was killed mid-request (URLError, IncompleteRead, ...)
                return

    workers = [threading.Thread(target=annotate, args=args) for args in
               (("warm", "more"), ("warm", "less"), ("round", "equal"), ("round", "more"))]
    for worker in workers:
        worker.start()
    while len(acknowledged) < 60 and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stop.set()
    for worker in workers:
        worker.join()
    text = (tmp_path / "pairs.csv").read_text()
    assert text.endswith("\n")
    assert all(len(row) == 6 for row in csv.reader(text.splitlines()))  # no partial or interleaved line
    on_disk = standing(tmp_path)
    assert len(acknowledged) >= 60 and set(acknowledged) <= set(on_disk)
    assert len(on_disk) - len(acknowledged) <= len(workers)  # at most the answers in flight
    # A restart takes the folder again (the lock died with the process) and knows every answer.
    process, base = start_server(tmp_path, "--strategy=random")
    try:
        assert sum(call(f"{base}/api/status")["answers"].values()) == len(on_disk)
        second = subprocess.run([sys.executable, "-m", "relrank", "annotate", f"--images={tmp_path}", "--attr=warm",
                                 "--no_browser", "--port=0"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is being annotated by another relrank annotate (pid" in second.stderr
        port = base.rsplit(":", 1)[1]
        make_images(tmp_path / "other", 2)
        clash = subprocess.run([sys.executable, "-m", "relrank", "annotate", f"--images={tmp_path / 'other'}",
                                "--no_browser", f"--port={port}", "--attr=warm"], capture_output=True, text=True,
                               timeout=120)
        assert clash.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in clash.stderr
        assert "--port" in clash.stderr
    finally:
        process.kill()


def test_listening_beyond_this_machine_needs_a_token(tmp_path):
    make_images(tmp_path, 3)
    process, url = start_server(tmp_path, "--attr=warm", "--strategy=random", "--host=0.0.0.0")
    try:
        token = re.search(r"\?token=([\w-]{16,})$", url).group(1)  # generated, and printed in the URL
        base = url.split("/?")[0].replace("0.0.0.0", "127.0.0.1")
        with pytest.raises(urllib.error.HTTPError, match="403"):
            call(f"{base}/api/status")
        assert call(f"{base}/api/status?token={token}")["images"] == 3
    finally:
        process.kill()


def chromium_driver():
    """A headless Chromium driven by Selenium (the system's browser and driver), or a skip saying why."""
    webdriver = pytest.importorskip("selenium.webdriver")
    browser = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                    if os.path.exists(p)), None)
    driver_path = next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)),
                       None)
    if browser is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them where it runs as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))


def shown_pair(driver) -> str:
    """The pair on the page ("a\nb") once both its images are shown, else "": read in one step (two reads of
    the page could straddle a change of pair)."""
    return driver.execute_script("const d = document.body.dataset; return d.ready === '1' ? d.pair : '';")


def test_the_page_in_a_browser(tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver()
    make_images(tmp_path, 7, [XSS_NAME])  # 28 pairs
    process, base = start_server(tmp_path, "--attr=warm,round", "--strategy=random")
    try:
        driver.get(base + "/")
        body = driver.find_element(By.TAG_NAME, "body")
        shown = lambda: shown_pair(driver)  # noqa: E731
        WebDriverWait(driver, 30).until(lambda d: shown())
        keys = {"\ue012": "more", "\ue014": "less", "2": "equal"}  # left arrow, right arrow, 2
        expected, names_seen = [], set()
        for k in range(20):
            a, b = shown().split("\n")
            assert driver.find_element(By.ID, "name-a").text == a and driver.find_element(By.ID, "name-b").text == b
            names_seen |= {a, b}
            key = list(keys)[k % 3]
            body.send_keys(key)
            expected.append((a, b, "warm", keys[key]))
            WebDriverWait(driver, 30).until(lambda d: (now := shown()) and now != f"{a}\n{b}")
        body.send_keys("u")
        last = expected.pop()
        WebDriverWait(driver, 30).until(lambda d: shown() == f"{last[0]}\n{last[1]}")  # asked again
        assert "Undone" in driver.find_element(By.ID, "message").text
        driver.refresh()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-pair"))
        assert standing(tmp_path) == expected  # exactly the 19 answers, in order
        assert XSS_NAME in names_seen  # shown as text (checked above), and never run:
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text
        assert not driver.find_elements(By.CSS_SELECTOR, 'img[src="x"]')
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("\ue004")  # Tab: the next attribute
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "attr-name").text == "round")
        shot = os.environ.get("RELRANK_SCREENSHOT") or str(tmp_path / "annotate.png")
        driver.save_screenshot(shot)
        assert Image.open(shot).size[0] > 0
    finally:
        driver.quit()
        process.kill()


def test_the_ranker_refits_in_the_background_and_guides_the_picks(tmp_path):
    names = make_images(tmp_path, 30)
    strength = {name: k for k, name in enumerate(names)}  # the attribute: the image's number
    rng = np.random.default_rng(0)
    table = np.concatenate([np.arange(30.0)[:, None], rng.normal(size=(30, 7))], axis=1)  # one informative column
    session = open_session(tmp_path, ("n",), "active", retrain_every=10, warmup=10,
                           features=lambda progress: table)
    client = create_app(session).test_client()
    for _ in range(40):
        pair = ask(client, "n")
        label = "more" if strength[pair["a"]] > strength[pair["b"]] else "less"
        client.post("/api/answer", json=dict(pair, label=label))
    deadline = time.time() + 60
    while session.status()["fitted_on"].get("n", 0) < 40 and time.time() < deadline:
        time.sleep(0.05)
    status = session.status()
    assert status["fitted_on"] == {"n": 40} and status["ranker"].startswith("refitted n on 40 answers")
    assert status["val_accuracy"]["n"] >= 80  # its held-out fifth of the answers
    assert np.corrcoef(session.scores["n"], np.arange(30))[0, 1] > 0.9
    session.selectors["n"].random_share = 0.0
    gaps = [abs(strength[p["a"]] - strength[p["b"]]) for p in (ask(client, "n") for _ in range(10))]
    assert np.median(gaps) <= 3  # pairs the ranker cannot tell apart: neighbours (random pairs: ~10 apart)
    session.close()
    assert not session.thread.is_alive()


def test_the_active_learning_simulator_on_synthetic_shapes(tmp_path):
    """benchmarks/active.py end to end at a small budget (the PubFig figures are in RESULTS.md)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    plot = tmp_path / "curves.png"
    result = subprocess.run(
        [sys.executable, os.path.join(repo, "benchmarks", "active.py"), "--dataset=synthetic", "--images=90",
         "--budget=100", "--seeds=1", "--attrs=brightness", "--model=vgg16_small", "--image_size=32", "--no_write",
         "--no_latency",
         f"--plot={plot}", f"--images_dir={tmp_path / 'images'}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = dict(re.findall(r"^\| (\d+) \| (.*) \|$", result.stdout, re.M))
    assert list(rows) == ["40", "100"]
    final = [float(cell.split(" +- ")[0]) for cell in rows["100"].split(" | ")]
    assert all(60 < accuracy <= 100 for accuracy in final), final  # both strategies learn brightness (chance: 50)
    pick = float(re.search(r"pick: median ([\d.]+) ms", result.stdout).group(1))
    assert pick < 100
    assert Image.open(plot).size == (720, 480)
    sys.path.insert(0, os.path.join(repo, "benchmarks"))
    import active

    assert active.answers_to_reach({100: 60.0, 200: 70.0, 400: 80.0}, 75.0) == 300.0
    assert active.answers_to_reach({100: 60.0, 200: 70.0}, 71.0) is None
    assert list(active.compare(np.array([0.5, 0.5, 0.9]), np.array([0.52, 0.9, 0.5]), 0.04)) == [0.5, 0.0, 1.0]


# -- nothing lost, nothing half-written (issue 28) ----------------------------------------------------------------

def test_each_answer_is_fsynced_to_pairs_csv_before_it_is_acknowledged(tmp_path, monkeypatch):
    """kill -9 cannot catch a missing fsync (the page cache survives it): watch os.fsync itself."""
    make_images(tmp_path, 4)
    log = AnswerLog(str(tmp_path / "pairs.csv"), set(folders.open_folder(str(tmp_path)).names))
    synced = []

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fsync", fsync)
    log.add("shape_00.png", "shape_01.png", "warm", "more")
    size = os.path.getsize(tmp_path / "pairs.csv")
    assert (str(tmp_path / "pairs.csv"), size) in synced  # the file, with the answer's line in it
    synced.clear()
    log.retract()
    assert (str(tmp_path / "pairs.csv"), os.path.getsize(tmp_path / "pairs.csv")) in synced


def test_a_full_disk_refuses_the_answer_in_json_and_leaves_no_torn_line(api, monkeypatch):
    client, session, root = api
    pair = ask(client)
    before = (root / "pairs.csv").read_bytes()
    real_write = os.write

    def full(fd, data):  # half the line reaches the disk, then the disk is full
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    response = client.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label="more"))
    assert response.status_code == 503 and response.is_json
    assert "could not be saved" in response.json["error"] and "No space left on device" in response.json["error"]
    assert (root / "pairs.csv").read_bytes() == before  # cut back: no torn line for a restart to count
    monkeypatch.setattr(os, "write", real_write)
    response = client.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label="less"))
    assert response.status_code == 200, response.json  # still on offer: the page's retry is recorded once
    assert standing(root) == [(pair["a"], pair["b"], "warm", "less")]
    assert len(open_session(root).log.answers) == 1  # a restart counts the saved answer alone


@pytest.mark.parametrize("edit", ["drop the final newline", "append a line", "replace the file"])
def test_pairs_csv_changed_under_the_server_refuses_answers_until_a_restart(api, edit):
    client, session, root = api
    first = ask(client)
    assert client.post("/api/answer", json=dict(attr="warm", a=first["a"], b=first["b"], label="more")).status_code == 200
    path = root / "pairs.csv"
    text = path.read_text()
    if edit == "drop the final newline":
        path.write_text(text.rstrip("\n"))
    elif edit == "append a line":
        with open(path, "a") as f:
            f.write(f"{first['a']},{first['b']},round,more,bob,\n")
    else:
        (root / "copy.csv").write_text(text)
        os.replace(root / "copy.csv", path)
    pair = ask(client)
    response = client.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label="more"))
    assert response.status_code == 503 and "changed on disk while the server ran" in response.json["error"]
    rows = standing(root)  # nothing glued onto the edited last line; the file still parses
    assert (first["a"], first["b"], "warm", "more") in rows and (pair["a"], pair["b"], "warm", "more") not in rows
    restarted = create_app(open_session(root, ("warm", "round")), annotator="ann").test_client()
    pair = ask(restarted)
    assert restarted.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label="less")).status_code == 200
    assert (pair["a"], pair["b"], "warm", "less") in standing(root)


def test_an_image_deleted_or_damaged_mid_session_is_dropped_not_a_500(api, capsys):
    client, session, root = api
    os.remove(root / "shape_03.png")
    with open(root / "shape_04.png", "r+b") as f:  # a valid header, the data cut short
        f.truncate(60)
    for name in ("shape_03.png", "shape_04.png"):
        response = client.get(f"/images/{name}")
        assert response.status_code == 404 and response.is_json
    err = capsys.readouterr().err
    assert err.count("dropped shape_03.png") == 1 and "dropped shape_04.png" in err
    client.get("/images/shape_03.png")
    assert "dropped shape_03.png" not in capsys.readouterr().err  # named once
    response = client.post("/api/answer", json=dict(attr="warm", a="shape_03.png", b="shape_00.png", label="more"))
    assert response.status_code == 400 and "can no longer be read" in response.json["error"]
    seen = set()
    while not (pair := ask(client)).get("done"):
        seen.update((pair["a"], pair["b"]))
        assert client.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label="more")).status_code == 200
    assert seen == {"shape_00.png", "shape_01.png", "shape_02.png", "shape_05.png"}  # 6 pairs, none with those two


def test_oversized_bodies_and_server_failures_are_json(api, monkeypatch):
    client, session, root = api
    response = client.post("/api/answer", data="x" * 100_000, content_type="application/json")
    assert response.status_code == 413 and response.is_json and "larger than" in response.json["error"]

    def broken(*args, **kwargs):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(session, "status", broken)
    response = client.get("/api/status")
    assert response.status_code == 500 and response.is_json
    assert response.json["error"] == "the server failed: RuntimeError: something unforeseen"


@pytest.mark.parametrize("name", [" leading.png", "trailing .png", "comma,name.png", 'quote"name.png',
                                  "new\nline.png"])
def test_file_names_round_trip_through_pairs_csv_and_the_builder(tmp_path, name):
    make_images(tmp_path, 2, names=[name])
    session = open_session(tmp_path)
    client = create_app(session).test_client()
    while not (pair := ask(client)).get("done"):
        assert client.post("/api/answer", json=dict(attr="warm", **{k: pair[k] for k in "ab"},
                                                    label="more")).status_code == 200
    rows = standing(tmp_path)  # the builder's parser, as train.py reads it
    assert len(rows) == 3 and name in {n for r in rows for n in r[:2]}
    assert len(open_session(tmp_path).log.answers) == 3  # annotate's own restart reads them back


def test_a_key_pressed_while_the_next_pair_loads_is_not_recorded_for_it(tmp_path):
    """Slow images (as large ones are): a key before both images of the new pair are on screen is ignored."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver()
    make_images(tmp_path, 5)
    process, base = start_server(tmp_path, "--attr=warm", "--strategy=random")
    try:
        driver.get(base + "/")
        body = driver.find_element(By.TAG_NAME, "body")
        ready = lambda: body.get_dom_attribute("data-ready") == "1"  # noqa: E731 - both images shown
        WebDriverWait(driver, 30).until(lambda d: ready())
        first = body.get_dom_attribute("data-pair")
        driver.set_network_conditions(offline=False, latency=1500, download_throughput=500 * 1024,
                                      upload_throughput=500 * 1024)
        body.send_keys("\ue012")  # left arrow: the first pair's answer
        WebDriverWait(driver, 30).until(lambda d: body.get_dom_attribute("data-pair") not in ("", first))
        assert not ready()  # its images are still on their way
        second = body.get_dom_attribute("data-pair")
        body.send_keys("\ue014")  # right arrow, pressed too early: ignored
        WebDriverWait(driver, 30).until(lambda d: ready())
        assert body.get_dom_attribute("data-pair") == second and len(standing(tmp_path)) == 1
        body.send_keys("\ue014")  # now it counts, for the pair on screen
        WebDriverWait(driver, 30).until(lambda d: len(standing(tmp_path)) == 2)
        assert standing(tmp_path)[1][:2] == tuple(second.split("\n")) and standing(tmp_path)[1][3] == "less"
    finally:
        driver.quit()
        process.kill()


# -- nothing recorded that was not seen and meant: offers and undo belong to a page (issue 28) -------------------

def test_offers_belong_to_a_page_and_reloads_use_up_nothing(tmp_path, monkeypatch):
    from relrank.annotate import session as sessions

    make_images(tmp_path, 4)  # 6 pairs
    client = create_app(open_session(tmp_path)).test_client()
    first = ask(client, page="tab-a")
    response = client.post("/api/answer", json=dict(attr="warm", a=first["a"], b=first["b"], label="more", page="tab-b"))
    assert response.status_code == 400 and "not on offer to this page" in response.json["error"]
    assert client.post("/api/answer", json=dict(attr="warm", a=first["a"], b=first["b"], label="more",
                                                page="tab-a")).status_code == 200
    for _ in range(10):  # a page reloaded again and again holds one offer at a time
        assert not ask(client, page="tab-a").get("done")
    others = [ask(client, page=f"tab-{k}") for k in range(4)]  # 5 pairs left: tab-a's and these 4
    assert ask(client, page="tab-x").get("done")
    assert client.post("/api/leave", json={"page": "tab-0"}).json == {"ok": True}  # the tab closed
    assert ask(client, page="tab-x")[("a")] in (others[0]["a"], others[0]["b"])
    monkeypatch.setattr(sessions, "OFFER_SECONDS", -1.0)  # every offer has expired
    assert not ask(client, page="tab-y").get("done")


def test_undo_retracts_only_what_that_page_and_annotator_gave(tmp_path):
    make_images(tmp_path, 6)
    client = create_app(open_session(tmp_path), annotator="server-default").test_client()

    def give(page, annotator, label="more"):
        pair = ask(client, page=page)
        assert client.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label=label,
                                                    annotator=annotator, page=page)).status_code == 200
        return pair["a"], pair["b"], "warm", label

    alice_1, bob_1 = give("tab-a", "alice"), give("tab-b", "bob")
    alice_2 = give("tab-c", "alice", "less")  # alice again, in another tab
    undone = client.post("/api/undo", json=dict(annotator="alice", page="tab-a")).json["undone"]
    assert (undone["a"], undone["b"], undone["annotator"]) == (alice_1[0], alice_1[1], "alice")  # not tab-c's later one
    assert standing(tmp_path) == [bob_1, alice_2]
    nothing = client.post("/api/undo", json=dict(annotator="alice", page="tab-b"))  # tab-b holds bob's answer only
    assert nothing.status_code == 400 and nothing.json["error"] == "nothing to undo from this page"
    rows = list(csv.DictReader(open(tmp_path / "pairs.csv")))
    assert [r["annotator"] for r in rows] == ["alice", "bob", "alice", "alice"] and rows[-1]["label"] == "undo"
    assert len(open_session(tmp_path).log.answers) == 2  # a restart reads the same
    again = dict(attr="warm", a=alice_1[0], b=alice_1[1], label="equal", annotator="alice")
    assert client.post("/api/answer", json=dict(again, page="tab-b")).status_code == 400  # on offer to tab-a only
    assert client.post("/api/answer", json=dict(again, page="tab-a")).status_code == 200  # answered again there
    assert standing(tmp_path) == [bob_1, alice_2, (alice_1[0], alice_1[1], "warm", "equal")]


def test_two_tabs_two_annotators_undo_and_reloads_in_a_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver()
    make_images(tmp_path, 4)  # 6 pairs
    process, base = start_server(tmp_path, "--attr=warm", "--strategy=random")

    def open_tab(name):
        driver.get(base + "/")
        WebDriverWait(driver, 30).until(lambda d: shown_pair(d))
        field = driver.find_element(By.ID, "annotator")
        field.clear()
        field.send_keys(name + "\n")  # remembered by the browser; Enter leaves the field
        return driver.current_window_handle

    def answer(handle, key="\ue012"):
        driver.switch_to.window(handle)
        before = shown_pair(driver)
        driver.find_element(By.TAG_NAME, "body").send_keys(key)
        finished = lambda d: "Every pair" in d.find_element(By.ID, "message").text  # noqa: E731
        WebDriverWait(driver, 30).until(lambda d: ((now := shown_pair(d)) and now != before) or finished(d))
        return tuple(before.split("\n"))

    try:
        tab_a = open_tab("alice")
        driver.switch_to.new_window("tab")
        tab_b = open_tab("bob")
        a_pair, b_pair = answer(tab_a), answer(tab_b, "\ue014")
        rows = list(csv.DictReader(open(tmp_path / "pairs.csv")))
        assert [(r["image_a"], r["image_b"], r["annotator"]) for r in rows] == [(*a_pair, "alice"), (*b_pair, "bob")]
        driver.switch_to.window(tab_a)
        driver.find_element(By.TAG_NAME, "body").send_keys("u")  # undo in tab A: alice's answer, not bob's later one
        WebDriverWait(driver, 30).until(lambda d: shown_pair(d) == "\n".join(a_pair))
        assert standing(tmp_path) == [(*b_pair, "warm", "less")]
        for _ in range(5):  # reloads of tab B take no pairs for good
            driver.switch_to.window(tab_b)
            driver.refresh()
            WebDriverWait(driver, 30).until(lambda d: shown_pair(d))
        assert driver.find_element(By.ID, "annotator").get_attribute("value") == "bob"  # remembered
        assert "Every pair" not in driver.find_element(By.ID, "message").text
        answered = {answer(tab_b) for _ in range(4)}  # bob answers the 4 pairs left besides tab A's
        assert len(answered) == 4 and tuple(a_pair) not in answered
        driver.switch_to.window(tab_b)
        WebDriverWait(driver, 30).until(lambda d: "Every pair" in d.find_element(By.ID, "message").text)
    finally:
        driver.quit()
        process.kill()


# -- active selection that says what it does (issue 28) -----------------------------------------------------------

def test_an_undecodable_image_gets_no_feature_and_the_rest_do(tmp_path, monkeypatch):
    from relrank.annotate import features

    names = make_images(tmp_path, 5)
    with open(tmp_path / names[2], "r+b") as f:  # a valid header, the data cut short
        f.truncate(60)
    monkeypatch.setattr(features, "CHUNK", 2)
    monkeypatch.setattr(features, "SAVE_EVERY", 2)
    paths = [str(tmp_path / n) for n in names]
    calls = []

    def stop_after_two_chunks(done, total):  # the server stops while features are computed
        calls.append((done, total))
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        features.compute_features(paths, "", "efficientnet_lite0", 64, stop_after_two_chunks)
    calls.clear()
    table = features.compute_features(paths, "", "efficientnet_lite0", 64, lambda done, total: calls.append(total))
    assert calls[-1] == 2  # the restart computed only what the first run had not saved: images 5, and 3 again
    assert np.isnan(table[2]).all() and np.isfinite(np.delete(table, 2, axis=0)).all()
    fresh = features.compute_features(paths, "", "efficientnet_lite0", 64, cache=False)
    np.testing.assert_allclose(np.delete(table, 2, axis=0), np.delete(fresh, 2, axis=0), rtol=1e-5, atol=1e-6)


def test_images_without_features_are_dropped_and_the_terminal_hears_each_change(tmp_path, capsys):
    names = make_images(tmp_path, 5)
    table = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    table[1] = np.nan

    def features(progress):
        progress(3, 5)
        progress(5, 5)
        return table

    session = open_session(tmp_path, strategy="active", features=features, retrain_every=2, warmup=2)
    deadline = time.time() + 30
    while "waiting for answers" not in session.ranker_state and time.time() < deadline:
        time.sleep(0.05)
    client = create_app(session).test_client()
    for _ in range(6):  # 6 pairs among the 4 images left
        pair = ask(client)
        assert names[1] not in (pair["a"], pair["b"])
        assert client.post("/api/answer", json=dict(attr="warm", a=pair["a"], b=pair["b"], label="more")).status_code == 200
    assert ask(client).get("done")
    deadline = time.time() + 30
    while "refitted" not in session.ranker_state and time.time() < deadline:
        time.sleep(0.05)
    session.close()
    err = capsys.readouterr().err
    for line in ("ranker: computing image features 3/5", "ranker: computing image features 5/5",
                 f"dropped {names[1]}: it cannot be read", "ranker: features ready (1 image(s) dropped); waiting",
                 "ranker: refitted warm on"):
        assert line in err, (line, err)


@pytest.mark.parametrize("problem", ["weights of another model", "a stale feature cache", "an unwritable cache"])
def test_feature_sources_are_checked_before_serving(tmp_path, monkeypatch, capsys, problem):
    from relrank.annotate import features
    from relrank.cli import main

    make_images(tmp_path / "photos", 3)
    flags = [f"--images={tmp_path / 'photos'}", "--attr=warm", "--no_browser", "--port=0"]
    cache = tmp_path / "cache"
    monkeypatch.setenv("RELRANK_CACHE", str(cache))
    if problem == "weights of another model":
        from safetensors.numpy import save_file
        save_file({"conv1.weight": np.zeros((4, 3, 3, 3), np.float32)}, str(tmp_path / "other.safetensors"))
        flags.append(f"--weights={tmp_path / 'other.safetensors'}")
        message = "other.safetensors: no tensor"
    elif problem == "a stale feature cache":
        config = features.feature_config("", "efficientnet_lite0")
        path, key = features.cache_file(config)
        from relrank.train.cached_features import write_cache
        write_cache(path, {**key, "image_size": 999}, np.zeros((0,), np.int64), np.zeros((0, 1280), np.float32))
        message = "is stale"
    else:
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root ignores permissions: use a path under a file instead
            monkeypatch.setenv("RELRANK_CACHE", str(tmp_path / "photos" / "shape_00.png" / "cache"))
        message = "is not writable"
    assert main(["annotate", *flags]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


# -- small projects (issue 28) ------------------------------------------------------------------------------------

def test_a_small_folder_trains_with_its_recipe_and_the_accuracy_says_how_few_pairs_it_rests_on(tmp_path, capsys):
    from relrank.cli import train_main

    names = make_images(tmp_path / "photos", 36)
    rng = np.random.default_rng(0)
    with open(tmp_path / "photos" / "pairs.csv", "w") as f:
        f.write("image_a,image_b,attribute,label\n")
        for _ in range(300):
            i, j = rng.choice(36, 2, replace=False)
            f.write(f"{names[i]},{names[j]},warm,{'more' if i > j else 'less'}\n")
    code = train_main(["--dataset=pairs_csv", f"--manual_dir={tmp_path / 'photos'}", f"--data_dir={tmp_path / 'tfds'}",
                       "--attr=warm", "--recipe=scratch", "--epochs=1", f"--workdir={tmp_path / 'run'}"])
    out, err = capsys.readouterr()
    assert code in (0, 3), err[-2000:]  # trained (learning or not: 1 epoch), never refused for its batch
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 2 <= config["batch_images"] <= 29  # no more than the folder's training images
    n = summary["test_pairs"]["warm"]
    assert 0 < n < 100 and f"on {n} test pairs" in out
    assert f"warning: few test pairs (warm {n}): one pair moves the accuracy by {100 / n:.1f} points" in err
    from relrank.cli import main

    assert main(["evaluate", f"--workdir={tmp_path / 'run'}"]) == 0
    assert f"warning: few test pairs that are not ties (warm {n}): one pair moves the accuracy" in capsys.readouterr().err


def test_a_decompression_bomb_is_named_as_such_and_one_answer_is_singular(tmp_path, monkeypatch, capsys):
    make_images(tmp_path, 3)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4,096 > 2 x 1,000: PIL refuses it
    folder = folders.open_folder(str(tmp_path))
    assert "huge.png" not in folder.names
    assert "skipping 1 image(s) too large to decode safely (over 2,000 pixels: decompression bombs?): huge.png" \
        in capsys.readouterr().err
    from relrank.cli.annotate import _answers

    assert (_answers(1), _answers(0), _answers(2)) == ("1 answer", "0 answers", "2 answers")
