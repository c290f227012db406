"""The IISAN TSV reader: file discovery, preprocessing and every documented problem."""
import json
from pathlib import Path

import pytest

from tpme.cli import main
from tpme.datasets.config import DataConfig
from tpme.datasets.readers import find_files, inspect_dataset, read_dataset_dir
from tpme.errors import TpmeError

ITEMS = "".join(f"I{i}\ttitle {i} &amp; co\n" for i in range(1, 9))
USERS = "U1\tI1 I2 I3 I4 I5 I6\nU2\tI2 I3 I4 I5 I6\nU3\tI1 I2\nU4\tI5 I6 I7 I8 I1 I2 I3\n"


def write(d: Path, items: str | bytes = ITEMS, users: str | bytes = USERS, items_name="x_items.tsv", users_name="am_x_users.tsv") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in ((items_name, items), (users_name, users)):
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


def cfg(**kw) -> DataConfig:
    return DataConfig(missing_images="blank", **kw)


def kinds(report) -> list[tuple[str, int | None, bool]]:
    return [(p.kind, p.line, p.fatal) for p in report.problems]


def test_clean_dataset_preprocessed_and_titles_unescaped(tmp_path):
    r = inspect_dataset(write(tmp_path), cfg())
    assert r.usable and r.problems == []
    s = r.stats()
    assert (s["users"], s["items"], s["interactions"]) == (3, 8, 18)  # U3 (2 items) dropped
    assert r.titles[0] == "title 1 & co"
    assert s["images_missing"] == 8 and s["sequence_length"]["max"] == 7


def test_max_seq_len_keeps_the_last_items(tmp_path):
    r = inspect_dataset(write(tmp_path), cfg(max_seq_len=2))  # keeps the last 5
    assert [len(s) for s in r.pre.sequences] == [5, 5, 5]


def test_bad_encoding_is_fatal_with_line(tmp_path):
    items = ITEMS.encode() + b"I9\tcaf\xe9\n"
    r = inspect_dataset(write(tmp_path, items=items), cfg())
    assert ("encoding", 9, True) in kinds(r)
    with pytest.raises(TpmeError, match=r"x_items.tsv:9: error: byte 0xe9"):
        read_dataset_dir(tmp_path, cfg(), None, 512)


def test_truncated_last_line_warns_and_cut_id_is_unknown(tmp_path):
    r = inspect_dataset(write(tmp_path, users=USERS + "U5\tI1 I2 I3 I4 I5 I"), cfg())
    assert ("truncated", 5, False) in kinds(r)
    assert ("unknown-item", 5, False) in kinds(r)
    assert r.usable and r.stats()["users"] == 4


def test_unknown_items_dropped_with_warning_count(tmp_path):
    r = inspect_dataset(write(tmp_path, users=USERS.replace("I6", "NOPE")), cfg())
    assert kinds(r) == [("unknown-item", 1, False), ("unknown-item", 2, False), ("unknown-item", 4, False)]
    assert r.usable and r.stats()["warnings"] == {"unknown-item": 3}
    assert r.stats()["users"] == 2  # U2 fell below 5 items


def test_empty_title_and_duplicate_item_are_warnings(tmp_path):
    items = ITEMS.replace("I3\ttitle 3 &amp; co", "I3\t  ") + "I1\tagain\n"
    r = inspect_dataset(write(tmp_path, items=items), cfg())
    assert kinds(r) == [("empty-title", 3, False), ("duplicate-item", 9, False)]
    assert r.usable and r.titles[0] == "title 1 & co"


def test_duplicate_user_and_malformed_lines_are_fatal(tmp_path):
    r = inspect_dataset(write(tmp_path, users=USERS + "U1\tI1 I2 I3 I4 I5\nno-tab-here\n"), cfg())
    assert kinds(r) == [("duplicate-user", 5, True), ("malformed", 6, True)]
    assert "already on line 1" in r.problems[0].message
    assert not r.usable


def test_no_usable_user_is_fatal(tmp_path):
    r = inspect_dataset(write(tmp_path, users="U1\tI1 I2\n"), cfg())
    assert [p.kind for p in r.fatal] == ["empty"]


def test_missing_images_fatal_only_under_error_policy(tmp_path):
    write(tmp_path)
    assert [p.kind for p in inspect_dataset(tmp_path, DataConfig()).fatal] == ["missing-image"]
    with pytest.raises(TpmeError) as e:
        read_dataset_dir(tmp_path, DataConfig(), None, 512)
    assert "--missing-images" in e.value.fix


def test_file_discovery_none_ambiguous_and_explicit(tmp_path):
    with pytest.raises(TpmeError, match="no items file"):
        find_files(tmp_path, cfg())
    write(tmp_path)
    (tmp_path / "am_x_users_10K.tsv").write_text(USERS)
    with pytest.raises(TpmeError, match="several users files"):
        find_files(tmp_path, cfg())
    files = find_files(tmp_path, cfg(users_file="am_x_users_10K.tsv"))
    assert files.users.name == "am_x_users_10K.tsv"
    with pytest.raises(TpmeError, match="does not exist"):
        find_files(tmp_path, cfg(items_file="nope.tsv"))


def test_max_users_subsamples_eligible_users(tmp_path):
    r = inspect_dataset(write(tmp_path), cfg(max_users=2, seed=3))
    assert r.stats()["users"] == 2


def test_data_check_cli_exit_codes_and_json(tmp_path, capsys):
    write(tmp_path / "good")
    assert main(["data", "check", str(tmp_path / "good"), "--missing-images", "blank", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["users"], out["items"], out["interactions"], out["problems"]) == (3, 8, 18, [])
    write(tmp_path / "bad", users=USERS + "U1\tI1\n")
    assert main(["data", "check", str(tmp_path / "bad"), "--missing-images", "blank"]) == 2
    assert "am_x_users.tsv:5: user 'U1' already on line 1" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "missing")]) == 2


def test_scientific_statistics(shared_data, capsys):
    path = shared_data / "amazon-scientific"
    assert main(["data", "check", str(path), "--missing-images", "synthetic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["users"], out["items"], out["interactions"]) == (12_076, 20_314, 81_711)
    assert out["problems"] == [] and out["images_missing"] == 20_314
    assert main(["data", "check", str(path), "--json"]) == 0  # without a policy: usable, images missing is a warning
    out = json.loads(capsys.readouterr().out)
    assert (out["users"], out["items"], out["interactions"]) == (12_076, 20_314, 81_711)
    assert [(p["kind"], p["fatal"]) for p in out["problems"]] == [("missing-image", False)]
    assert main(["data", "check", str(path), "--missing-images", "error"]) == 2
    assert "12,076 users, 20,314 items, 81,711 interactions" in capsys.readouterr().out
