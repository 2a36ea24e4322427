"""Task files from the CLI against a real `suanli serve --demo`: `suanli run`, `job submit -f`,
`--dry-run`, `--env`, `--array`, `--wait` and `job resubmit`.

Two tests need the artifacts API (PUT/HEAD/GET /api/v1/artifacts) and staging on the local
executor, which other parts of issue 16 build: `test_train_example_end_to_end` and
`test_pipeline_example_runs_as_written`. Every other test here runs on this part alone."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from suanli.artifacts.archive import pack

from .conftest import Server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def task_file(folder: Path, text: str, name: str = "task.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def sha_of(folder: Path) -> str:
    buf = io.BytesIO()
    pack(folder, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def job_count(server: Server) -> int:
    with server.api() as api:
        total = api.get("/api/v1/jobs").json()["total"]
        assert isinstance(total, int)
        return total


def test_train_example_end_to_end(server: Server, tmp_path: Path) -> None:
    """The README's tour: run examples/train/task.yaml, watch it, download what it wrote into
    the work folder, and run it again: the folder is the same (downloads are never packed)."""
    work = tmp_path / "train"
    shutil.copytree(EXAMPLES / "train", work, ignore=shutil.ignore_patterns("out", "job-*"))
    r = server.cli("run", str(work / "task.yaml"), "--wait", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "uploaded" in out  # the first run sends the folder
    lines = [ln for ln in out.splitlines() if "  job " in ln]
    states = [ln.split()[-1] if "RUNNING" not in ln else "RUNNING" for ln in lines]
    assert states[0] == "QUEUED" and "COMPLETED" in lines[-1], out
    assert any("RUNNING on " in ln for ln in lines), out
    assert "trained on 200 points" in out
    jid = json.loads(server.cli("job", "list", "-o", "json").stdout)["items"][0]["id"]
    shown = server.cli("job", "show", str(jid)).stdout
    for line in (f"workdir:  artifact {sha_of(work)[:12]}", "requires: arch x86_64",
                 "env:      EPOCHS, LEARNING_RATE", "setup:    mkdir -p out …",
                 f"outputs:  out/**  (suanli job download {jid})"):
        assert line in shown, shown
    with server.api() as api:
        head = api.head(f"/api/v1/artifacts/{sha_of(work)}")
        assert head.status_code == 200  # stored once, by content
    # outputs come back: out/model.json and out/metrics.csv, into the work folder as in the tour
    dest = work / f"job-{jid}-outputs"
    got = server.cli("job", "download", str(jid), "--to", str(dest))
    assert got.returncode == 0, got.stderr
    model = json.loads((dest / "out" / "model.json").read_text())
    assert 2.5 < model["w"] < 3.5 and model["epochs"] == 300
    assert (dest / "out" / "metrics.csv").read_text().splitlines()[0] == "epoch,mse"
    again = server.cli("run", str(work / "task.yaml"))
    assert again.returncode == 0 and "already stored" in again.stdout  # nothing sent twice


def test_pipeline_example_runs_as_written(server: Server, tmp_path: Path) -> None:
    """The README's DAG example, and its data flow: train trains on preprocess's split (its
    outputs, staged into train's work folder) and evaluate tests the very model train wrote."""
    r = server.cli("job", "submit", "--dag", str(EXAMPLES / "pipeline.yaml"), "--wait",
                   timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in ("preprocess", "train", "evaluate"):
        assert f"stage {stage}" in r.stdout
    assert r.stdout.count(": COMPLETED") >= 3
    dag = json.loads(server.cli("dag", "list", "-o", "json").stdout)["items"][0]
    job = {st["name"]: st["job_id"] for st in dag["stages"]}
    assert {st["name"]: st["reads"] for st in dag["stages"]} == \
        {"preprocess": [], "train": ["preprocess"], "evaluate": ["train"]}
    logs = {name: server.cli("job", "logs", str(jid)).stdout for name, jid in job.items()}
    assert "160 to train, 40 to test" in logs["preprocess"]
    assert "trained on 160 points of out/train.csv" in logs["train"], logs["train"]
    got = server.cli("job", "download", str(job["train"]), "--to", str(tmp_path / "train"))
    assert got.returncode == 0, got.stderr
    model = json.loads((tmp_path / "train" / "out" / "model.json").read_text())
    assert model["points"] == 160 and model["data"] == "out/train.csv"
    assert (f"trained model: y = {model['w']:.3f}·x + {model['b']:.3f}, mse "
            in logs["evaluate"]), logs["evaluate"]
    assert "on 40 points of out/test.csv" in logs["evaluate"]
    got = server.cli("job", "download", str(job["evaluate"]), "--to", str(tmp_path / "eval"))
    assert got.returncode == 0, got.stderr
    result = json.loads((tmp_path / "eval" / "out" / "exact.json").read_text())
    assert result["model"]["w"] == model["w"] and result["model"]["test"] == "out/test.csv"


def test_dry_run_uploads_and_submits_nothing(server: Server, tmp_path: Path) -> None:
    work = tmp_path / "train"
    shutil.copytree(EXAMPLES / "train", work)
    (work / "out").mkdir()
    (work / "out" / "old-model.json").write_text("{}")  # ignored by .gitignore
    (work / "secret.key").write_text("x" * 100)
    (work / ".suanliignore").write_text("*.key\n")
    r = server.cli("run", str(work / "task.yaml"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "train.py" in r.stdout and "data/points.csv" in r.stdout
    assert "secret.key" not in r.stdout and "old-model" not in r.stdout
    assert "would upload" in r.stdout and "would go to" in r.stdout and "¥" in r.stdout
    assert "nothing uploaded, nothing submitted" in r.stdout
    with server.api() as api:
        assert api.head(f"/api/v1/artifacts/{sha_of(work)}").status_code == 404
    assert job_count(server) == 0
    # an array's dry run prices every task
    arr = server.cli("run", str(EXAMPLES / "array.yaml"), "--dry-run")
    assert arr.returncode == 0 and "for 10 tasks" in arr.stdout, arr.stdout + arr.stderr
    assert job_count(server) == 0
    dag = server.cli("job", "submit", "--dag", str(EXAMPLES / "pipeline.yaml"), "--dry-run")
    assert dag.returncode == 0, dag.stdout + dag.stderr
    assert "stage evaluate: would go to" in dag.stdout and "evaluate.py" in dag.stdout
    assert job_count(server) == 0
    with server.api() as api:
        assert api.get("/api/v1/dags").json()["total"] == 0
    # suanli's own durations as well as Slurm's
    slow = task_file(tmp_path, "name: x\nworkdir: null\nrun: 'true'\nwalltime: 1h30m\n",
                     name="slow.yaml")
    r = server.cli("run", str(slow), "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["walltime_s"] == 5400, r.stderr
    slurm = task_file(tmp_path, "name: x\nworkdir: null\nrun: 'true'\nwalltime: 1-02:00:00\n",
                      name="slurm.yaml")
    r = server.cli("run", str(slurm), "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["walltime_s"] == 93600, r.stderr


@pytest.mark.parametrize("text, words", [
    ("name: x\nrun: echo\ncomand: [ls]\n", "unknown key comand"),
    ("name: x\nrun: echo\nresources: {device: cpu, gpus: 2}\n", "resources: unknown key gpus"),
    ("name: x\nrun: echo\nwalltime: soon\n", "walltime: 'soon' is not a duration"),
    ("name: x\nrun: echo\nbudget: -3\n", "budget:"),
    ("name: x\nrun: echo\nenv: {PATH: /evil}\n", "env: PATH is set by suanli"),
    ("name: x\nrun: echo\nenv: {LD_PRELOAD: /tmp/x.so}\n", "env: LD_PRELOAD is set by suanli"),
    ("name: x\nrun: echo\narray: 5-1\n", "array: range '5-1' is empty"),
    ("name: x\nrun: echo\narray: 0-10000\n", "at most 10000 tasks"),
    ("name: x\nrun: echo\noutputs: [../../etc]\n", "outputs[0]: '../../etc' must stay inside"),
    ("name: x\nrun: echo\ninputs: [{path: d, from: nowhere}]\n", "inputs[0].from"),
    ("name: x\nrun: echo\nconstraints: {arch: z80}\n", "constraints.arch"),
    ("name: x\nrun: echo\nworkdir: missing-folder\n", "workdir:"),
    ("name: x\n", "give run"),
    ("- just\n- a list\n", "a task file is a map"),
    ("name: x\nrun: echo\npolicy: fastestest\n", "policy: Input should be"),
])
def test_bad_task_files_are_named_without_traceback(server: Server, tmp_path: Path, text: str,
                                                    words: str) -> None:
    path = task_file(tmp_path, text)
    r = server.cli("run", str(path))
    assert r.returncode == 1, r.stdout
    assert words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert job_count(server) == 0


def test_env_and_array_flags(server: Server, tmp_path: Path) -> None:
    path = task_file(tmp_path, "name: hello\nworkdir: null\nenv: {GREETING: hi}\n"
                               "run: echo \"$GREETING $WHO $SUANLI_ARRAY_INDEX\"\nwalltime: 1m\n")
    one = server.cli("run", str(path), "--env", "WHO=world", "--wait")
    assert one.returncode == 0, one.stderr
    assert "hi world \n" in one.stdout
    r = server.cli("job", "submit", "-f", str(path), "--env", "GREETING=hey", "--array", "0-3%2",
                   "-o", "json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert len(answer["jobs"]) == 4
    waited = server.cli("run", str(path), "--array", "7,9", "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "array " in waited.stdout and "2 COMPLETED" in waited.stdout
    with server.api() as api:
        view = api.get(f"/api/v1/arrays/{answer['array_id']}").json()
        assert view["max_running"] == 2 and view["jobs"] == answer["jobs"]
    from ..waiting import eventually

    with server.api() as api:
        eventually(lambda: api.get(f"/api/v1/arrays/{answer['array_id']}").json()["states"]
                   == {"COMPLETED": 4}, what="the array's four tasks")
    logs = [server.cli("job", "logs", str(j)).stdout for j in answer["jobs"]]
    assert logs == [f"hey  {i}\n" for i in range(4)]
    bad = server.cli("run", str(path), "--env", "PATH=/evil")
    assert bad.returncode == 1 and "--env: PATH is set by suanli" in bad.stderr
    bad = server.cli("run", str(path), "--env", "NOEQUALS")
    assert bad.returncode == 1 and "NAME=value" in bad.stderr
    bad = server.cli("run", str(path), "--array", "0-99999")
    assert bad.returncode == 1 and "--array" in bad.stderr and "Traceback" not in bad.stderr
    bad = server.cli("job", "submit", "-f", str(path), "--units", "4")
    assert bad.returncode == 1 and "set --units in the task file" in bad.stderr
    bad = server.cli("job", "submit", "--env", "LD_PRELOAD=x", "--", "true")
    assert bad.returncode == 1 and "LD_PRELOAD is set by suanli" in bad.stderr


def test_failed_wait_shows_the_end_of_stderr_and_resubmit(server: Server, tmp_path: Path) -> None:
    path = task_file(tmp_path, "name: noisy\nworkdir: null\nsetup: echo setting up\n"
                               "run: |\n  for i in $(seq 1 30); do echo line$i >&2; done\n"
                               "  exit 3\nwalltime: 1m\n")
    r = server.cli("run", str(path), "--wait")
    assert r.returncode == 3, r.stdout + r.stderr
    out = r.stdout
    assert "setting up" in out and "FAILED (exit 3)" in out
    assert "last 20 lines of stderr" in out and "line11" in out and "line30" in out
    assert "line10\n" not in out
    jid = json.loads(server.cli("job", "list", "-o", "json").stdout)["items"][0]["id"]
    assert f"suanli job logs {jid} --stderr" in out
    again = server.cli("job", "resubmit", str(jid), "--wait")
    assert again.returncode == 3 and f"again from job {jid}" in again.stdout
    jobs = json.loads(server.cli("job", "list", "-o", "json").stdout)["items"]
    assert len(jobs) == 2 and jobs[0]["name"] == jobs[1]["name"] == "noisy"
    # another tenant cannot resubmit it
    other = server.cli("job", "resubmit", str(jid), token="tenant_b")
    assert other.returncode == 1 and f"no job {jid}" in other.stderr


def test_dag_wait_prints_each_stage(server: Server, tmp_path: Path) -> None:
    path = task_file(tmp_path, "name: p\nstages:\n"
                               "  - {name: a, run: 'echo a', walltime: 1m}\n"
                               "  - {name: b, run: 'echo $X', env: {X: bee}, depends_on: [a],"
                               " walltime: 1m}\n", name="dag.yaml")
    r = server.cli("job", "submit", "--dag", str(path), "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stage a (job" in r.stdout and "stage b (job" in r.stdout
    assert r.stdout.index("stage a") < r.stdout.index("stage b")
    dag = json.loads(server.cli("dag", "list", "-o", "json").stdout)["items"][0]
    b = next(s for s in dag["stages"] if s["name"] == "b")
    assert server.cli("job", "logs", str(b["job_id"])).stdout == "bee\n"
    bad = task_file(tmp_path, "name: p\nstages:\n  - {name: a, run: x, array: 3-1}\n",
                    name="bad.yaml")
    r = server.cli("job", "submit", "--dag", str(bad))
    assert r.returncode == 1 and "stages[0].array: range '3-1' is empty" in r.stderr


def test_dag_with_an_array_stage_and_stage_outputs_as_inputs(server: Server,
                                                             tmp_path: Path) -> None:
    """A DAG file through the CLI on the local executor: `split` writes shards, `square` is an
    array whose task i reads shard i of split's outputs, `total` reads every task's outputs
    (at parts/<index>) and sums them; `--wait` prints the array's progress, and the final
    outputs download."""
    path = task_file(tmp_path, """name: squares
workdir: null
stages:
  - name: split
    run: mkdir -p out && for i in 0 1 2 3 4; do echo $((i + 1)) > out/shard-$i.txt; done
    walltime: 1m
    outputs: [out/**]
  - name: square
    depends_on: [split]
    array: 0-4%2
    inputs: [{stage: split, path: in}]
    run: |
      n=$(cat in/out/shard-$SUANLI_ARRAY_INDEX.txt)
      mkdir -p out && echo $((n * n)) > out/square.txt
    walltime: 1m
    outputs: [out/square.txt]
  - name: total
    depends_on: [square]
    inputs: [{stage: square, path: parts}]
    run: |
      mkdir -p result
      s=0; for f in parts/*/out/square.txt; do s=$((s + $(cat $f))); done
      echo $s > result/sum.txt
      ls parts > result/indices.txt
      cat result/sum.txt
    walltime: 1m
    outputs: [result/**]
""", name="squares.yaml")
    r = server.cli("job", "submit", "--dag", str(path), "--wait", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stage square (array " in r.stdout and "5/5 done" in r.stdout, r.stdout
    progress = [ln for ln in r.stdout.splitlines() if "stage square" in ln and " done" in ln]
    assert len(progress) >= 2, r.stdout  # the count is printed as it changes
    dag = json.loads(server.cli("dag", "list", "-o", "json").stdout)["items"][0]
    assert dag["state"] == "COMPLETED"
    square = next(st for st in dag["stages"] if st["name"] == "square")
    assert square["tasks"] == 5 and square["done"] == 5 and len(square["jobs"]) == 5
    shown = server.cli("dag", "show", str(dag["id"]))
    assert f"array {square['array_id']}, 5/5 done" in shown.stdout, shown.stdout
    shown = server.cli("job", "show", str(square["jobs"][2]))
    assert (f"part of:  DAG {dag['id']}, stage square, array {square['array_id']}, task 2"
            in shown.stdout), shown.stdout
    total = next(st for st in dag["stages"] if st["name"] == "total")
    got = server.cli("job", "download", str(total["job_id"]), "--to", str(tmp_path / "final"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "final" / "result" / "sum.txt").read_text() == "55\n"  # 1+4+9+16+25
    assert (tmp_path / "final" / "result" / "indices.txt").read_text().split() == \
        ["0", "1", "2", "3", "4"]
    # a stage that names a stage it does not depend on: refused before anything is sent
    bad = task_file(tmp_path, "name: p\nworkdir: null\nstages:\n"
                              "  - {name: a, run: 'true', outputs: [o]}\n"
                              "  - {name: b, run: 'true', inputs: [{stage: a, path: d}]}\n",
                    name="bad.yaml")
    r = server.cli("job", "submit", "--dag", str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "stages[1].inputs[0].stage: 'a' is not a stage 'b' depends on" in r.stderr, r.stderr


def test_a_local_input_folder_is_uploaded_as_an_artifact(server: Server, tmp_path: Path) -> None:
    """`inputs: [{path: data, from: ./local}]`: the folder is packed as an upload artifact and
    the job names it by SHA-256. NEEDS the artifacts API and staging."""
    local = tmp_path / "local"
    local.mkdir()
    (local / "numbers.txt").write_text("1 2 3\n")
    path = task_file(tmp_path, "name: reads\nworkdir: null\ninputs: [{path: data, from: local}]\n"
                               "run: cat data/numbers.txt\nwalltime: 1m\n")
    r = server.cli("run", str(path), "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 2 3" in r.stdout
    with server.api() as api:
        assert api.head(f"/api/v1/artifacts/{sha_of(local)}").status_code == 200
