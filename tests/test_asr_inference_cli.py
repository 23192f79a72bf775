"""asr_inference's command line: one set, or several through --sets_file (one model load)."""
import pytest

from espnet_plugins.bin import asr_inference

MODEL = ["--asr_train_config", "c.yaml", "--asr_model_file", "m.pth"]


def test_sets_file_lists_each_set_with_its_keys_output_and_prior(tmp_path):
    sets = tmp_path / "sets.1.txt"
    sets.write_text("dump/a/wav.scp a/keys.1.scp a/output.1\n\n"
                    "dump/b/wav.scp - b/output.1 dump/b/utt2lang\n", encoding="utf-8")
    args = asr_inference.parse_args(MODEL + ["--sets_file", str(sets)])
    assert asr_inference.decode_sets(args) == [
        (["dump/a/wav.scp,speech,sound"], "a/keys.1.scp", "a/output.1", None),
        (["dump/b/wav.scp,speech,sound"], None, "b/output.1", "dump/b/utt2lang")]


def test_one_set_without_sets_file():
    args = asr_inference.parse_args(MODEL + ["--data_path_and_name_and_type", "w.scp,speech,sound",
                                             "--output_dir", "out", "--key_file", "k"])
    assert asr_inference.decode_sets(args) == [(["w.scp,speech,sound"], "k", "out", None)]


def test_bad_command_lines_say_what_to_give(tmp_path, capsys):
    with pytest.raises(SystemExit):
        asr_inference.parse_args(MODEL + ["--output_dir", "out"])
    assert "or --sets_file" in capsys.readouterr().err
    sets = tmp_path / "sets.txt"
    sets.write_text("dump/a/wav.scp a/keys.1.scp\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        asr_inference.parse_args(MODEL + ["--sets_file", str(sets), "--output_dir", "out"])
    assert "drop --data_path_and_name_and_type" in capsys.readouterr().err
    args = asr_inference.parse_args(MODEL + ["--sets_file", str(sets)])
    with pytest.raises(SystemExit, match=r"sets.txt:1: expected"):
        asr_inference.decode_sets(args)
