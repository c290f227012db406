"""The example plugin (examples/tpme_plugin_example) registers through the entry-point group,
appears in `tpme methods` and runs in `tpme run`; `--plugin MODULE` loads it too.

No installation: the test writes the distribution's metadata (a *.dist-info directory
with the entry points the example's pyproject.toml declares) into a temporary directory
on PYTHONPATH, which is what importlib.metadata reads for an installed package.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tpme_plugin_example"
MARK = "----"
# one interpreter runs `tpme methods --json` then `tpme run ...` (interpreter start-up is the slow part)
TWO_COMMANDS = (
    "import sys; from tpme.cli import main; i = sys.argv.index('--then'); "
    f"rc = main(sys.argv[1:i]); print({MARK!r}, flush=True); sys.exit(rc or main(sys.argv[i + 1:]))"
)


def _fake_install(tmp_path: Path) -> dict[str, str]:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    eps = project["entry-points"]["tpme.methods"]
    dist = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text("[tpme.methods]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    path = os.pathsep.join([str(ROOT), str(EXAMPLE), str(dist.parent), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1")


def test_entry_point_plugin_is_listed_and_runs(tmp_path):
    env = _fake_install(tmp_path)
    run = ["run", "--preset", "ci", "--methods", "top-layers", "--method-opt", "k=1", "--out", str(tmp_path / "run"), "--in-process", "--quiet", "--json"]
    proc = subprocess.run([sys.executable, "-c", TWO_COMMANDS, "methods", "--json", "--then", *run], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed, ran = proc.stdout.split(MARK + "\n")
    assert "top-layers" in {m["name"] for m in json.loads(listed)}
    (record,) = json.loads(ran)
    assert record["status"] == "ok" and record["method"] == "top-layers" and record["trainable_params"] > 0


def test_plugin_option_and_module_flag(capsys):
    sys.path.insert(0, str(EXAMPLE))
    try:
        from tpme.cli import main
        from tpme.methods.registry import get_method
        from tpme.models.backbones import Backbones, BackboneSpec

        assert main(["methods", "--plugin", "tpme_plugin_example.top_layers", "--json"]) == 0
        assert "top-layers" in {m["name"] for m in json.loads(capsys.readouterr().out)}
        tower = get_method("top-layers", {"k": "1"}).build_tower(Backbones.build(BackboneSpec.parse("tiny")), 16)
        trainable = {n for n, p in tower.named_parameters() if p.requires_grad and not n.startswith("heads.")}
        assert trainable and all(n.startswith(("text.encoder.layer.1.", "image.layers.1.")) for n in trainable)
    finally:
        sys.path.remove(str(EXAMPLE))
