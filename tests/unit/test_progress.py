"""What a person sees while the pipeline runs: kfp's task lines and the steps' events become one line per
step; everything printed (this process, and the processes it starts) lands in the log file."""

import io
import subprocess
import sys

from cxr import events
from cxr_cli.progress import StepView, captured

# kfp's local runner, as it prints (colour codes and indentation included)
KFP = {
    "start": "12:38:00.406 - INFO - Executing task \x1b[96m'{name}'\x1b[0m\n",
    "end": "12:38:04.345 - INFO - Task \x1b[96m'{name}'\x1b[0m finished with status \x1b[92m{status}\x1b[0m\n",
}


def step(name: str, *body: str, status: str = "SUCCESS") -> list[str]:
    return [KFP["start"].format(name=name), *body, KFP["end"].format(name=name, status=status)]


def event_line(kind: str, **fields) -> str:
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        events.emit(kind, **fields)
    finally:
        sys.stdout = sys_stdout
    return "    " + out.getvalue()  # kfp indents a step's streamed lines


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.5
        return self.now


def test_one_line_per_step_with_its_figure_and_none_of_the_noise():
    out = io.StringIO()
    view = StepView(out, tty=False, clock=Clock())
    lines = [
        *step("ingest", "    {'executor input': 'a whole JSON blob'}\n", event_line("figure", text="40 images")),
        *step(
            "train",
            "    Epoch 1/2\n",
            event_line("epoch", epoch=1, epochs=2, loss=0.9, val_loss=0.70),
            event_line("epoch", epoch=2, epochs=2, loss=0.6, val_loss=0.72),
        ),
        *step("validate", event_line("figure", text="8/9 expectations passed"), status="FAILURE"),
    ]
    for line in lines:
        view.feed(line)
    shown = out.getvalue().splitlines()
    assert shown == [
        "  ✓ ingest        1.5 s  40 images",
        "  ✓ train         1.5 s  2 epochs, best val_loss 0.700 at epoch 1",
        "  ✗ validate      1.5 s  failure: 8/9 expectations passed",
    ]
    assert view.failed_step == "validate"


def test_on_a_terminal_the_running_step_is_redrawn_with_the_epoch_bar():
    out = io.StringIO()
    view = StepView(out, tty=True, clock=Clock())
    for line in step("train", event_line("epoch", epoch=3, epochs=10, loss=0.5, val_loss=0.4)):
        view.feed(line)
    drawn = out.getvalue()
    assert "\r\x1b[K  … train" in drawn
    assert "[######..............] epoch 3/10  best val_loss 0.400 at epoch 3" in drawn
    assert drawn.endswith("✓ train         1.5 s  1 epoch, best val_loss 0.400 at epoch 3\n")


def test_lines_that_merely_look_like_events_are_ignored():
    assert events.parse("cxr-event {not json") is None
    assert events.parse("cxr-event [1, 2]") is None
    assert events.parse("an ordinary log line") is None
    assert events.parse('    cxr-event {"event": "figure", "text": "x"}') == {"event": "figure", "text": "x"}


def test_everything_printed_goes_to_the_log_and_the_view_sees_it_as_it_comes(tmp_path, capfd):
    log = tmp_path / "logs" / "run.log"
    seen = []
    with captured(log, seen.append):
        print("from this process")
        print("a warning", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import os; os.write(1, b'from a child at the fd level\\n')"])
    print("after the capture")
    text = log.read_text()
    for expected in ("from this process", "a warning", "from a child at the fd level"):
        assert expected in text and any(expected in line for line in seen)
    assert "after the capture" not in text
    terminal = capfd.readouterr()
    assert "from this process" not in terminal.out + terminal.err and "after the capture" in terminal.out
