"""The small seams of the segment command, the prompts and the server (issue 25, item 7): usage errors for a
prompt mode without its prompts, ..."""

from __future__ import annotations

import json

import pytest

from fastsam_onnx.models import example_image


# --- a prompt mode without its prompts is a usage error ----------------------------------------------------------


@pytest.mark.parametrize("mode", [
    ["--point-mode", "each"], ["--point-mode", "merge"], ["--point-mode", "each", "--box", "1,1,20,20"],
    ["--text-mode", "original"], ["--text-mode", "all", "--text-threshold", "0.5", "--point", "3,3"],
])
def test_a_mode_without_its_prompts_is_a_usage_error(tmp_path, capsys, mode):
    from fastsam_onnx.cli import main

    out = tmp_path / "r.json"
    assert main(["segment", str(example_image()), "--json", str(out), *mode]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and mode[0] in err and "needs" in err, err
    assert not out.exists()


def test_a_mode_with_its_prompts_from_a_file_is_accepted(tmp_path):
    from fastsam_onnx.cli import main

    prompts, out = tmp_path / "p.json", tmp_path / "r.json"
    prompts.write_text(json.dumps({"points": [[250, 200]]}))
    assert main(["segment", str(example_image()), "--json", str(out), "--prompts", str(prompts), "--point-mode", "each", "-q"]) == 0
    assert all(i["selected_by"] == ["point:0"] for i in json.loads(out.read_text())["instances"])
