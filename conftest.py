"""Pytest configuration: report the Keras backend loudly."""

import os


def pytest_report_header(config):
    del config
    backend = os.environ.get("KERAS_BACKEND", "tensorflow (Keras default)")
    return f"KERAS_BACKEND={backend}  NSL_DATA_DIR={os.environ.get('NSL_DATA_DIR', '(unset)')}"
