"""Write malformed copies of a small lesson, one problem each, for the tests (and for a teacher to try).

    python tests/lessons/make_broken_lessons.py OUT_FOLDER

Each case is a folder OUT_FOLDER/<case>; `CASES` maps it to the text its error message must contain.
"""
from __future__ import annotations

import sys
from pathlib import Path

GOOD_TOML = '''[lesson]
order = 1
target = "repeated-layer"
params = { w = 0.9472 }

[[step]]
id = "start"
at = { phase = "start" }

[[step]]
id = "acc"
at = { phase = "backward", node = "layer.weight" }
predict = { kind = "number", answer = 'grad("layer.weight")[0, 0]', tolerance = 0.01 }
'''

GOOD_MD = '''# A tiny lesson

## Start {#start}

The weight is {value("layer.weight")[0, 0]:.4f}.

## Accumulate {#acc}

Two uses, two gradients.

### Predict {#acc.predict}

What is dL/dw?
'''

# case -> (lesson.toml, en.md, the text the one-line error must contain)
CASES = {
    "good": (GOOD_TOML, GOOD_MD, None),
    "bad-toml": (GOOD_TOML.replace('order = 1', 'order = = 1'), GOOD_MD, "lesson.toml:2: not valid TOML"),
    "unknown-node": (GOOD_TOML.replace('node = "layer.weight"', 'node = "NoSuchBackward0"'), GOOD_MD,
                     "lesson.toml:12: step 'acc': no event backward NoSuchBackward0"),
    "unknown-function": (GOOD_TOML.replace("answer = 'grad(", "answer = 'gradient("), GOOD_MD,
                         "lesson.toml:13: step 'acc': unknown function 'gradient'"),
    "dunder-attribute": (GOOD_TOML.replace("answer = 'grad(\"layer.weight\")[0, 0]'",
                                           "answer = 'node(\"MmBackward0\").__class__'"), GOOD_MD,
                         "lesson.toml:13: step 'acc': access to .__class__ is not allowed"),
    "method-call": (GOOD_TOML.replace("answer = 'grad(\"layer.weight\")[0, 0]'",
                                      "answer = 'grad(\"layer.weight\").tofile(\"/tmp/x\")'"), GOOD_MD,
                    "lesson.toml:13: step 'acc': only the lesson functions may be called, not methods"),
    "import": (GOOD_TOML.replace("answer = 'grad(\"layer.weight\")[0, 0]'", "answer = '__import__(\"os\")'"),
               GOOD_MD, "lesson.toml:13: step 'acc': the name '__import__' is not allowed"),
    "import-statement": (GOOD_TOML.replace("answer = 'grad(\"layer.weight\")[0, 0]'", "answer = 'import os'"),
                         GOOD_MD, "lesson.toml:13: step 'acc': imports are not allowed"),
    "text-unknown-function": (GOOD_TOML, GOOD_MD.replace('{value("layer.weight")', '{values("layer.weight")'),
                              "en.md:5: unknown function 'values'"),
    "text-missing-step": (GOOD_TOML, GOOD_MD.replace("## Accumulate {#acc}", "## Accumulate {#acc2}"),
                          "en.md:7: the section {#acc2} belongs to no step"),
    "unknown-key": (GOOD_TOML.replace("[[step]]\nid = \"start\"", "[[step]]\nid = \"start\"\nwhen_ = 'True'"),
                    GOOD_MD, "lesson.toml:8: unknown key 'when_' in [[step]]"),
}


def write_cases(out: Path) -> dict:
    """Write every case under `out`; return {case: (folder, expected message part)}."""
    made = {}
    for case, (toml, md, expect) in CASES.items():
        folder = out / case
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lesson.toml").write_text(toml, encoding="utf-8")
        (folder / "en.md").write_text(md, encoding="utf-8")
        made[case] = (folder, expect)
    return made


if __name__ == "__main__":
    for case, (folder, _) in write_cases(Path(sys.argv[1])).items():
        print(case, folder)
