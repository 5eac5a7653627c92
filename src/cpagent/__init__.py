"""cpagent: an OCPP charge-point agent for Linux controller boards."""

import os as _os


def _installed_version() -> str:
    """The version of the cpagent that is running, read from the file that states it.

    Not with importlib.metadata: importing it costs some 50 ms and 1.3 MB at every start on
    a small board, for one line of text. Where the package is:

    - a source checkout (``src/cpagent``, also what an editable install runs): the
      ``[project] version`` of the checkout's ``pyproject.toml``, the one truth that the
      Debian packaging and the wheel take their version from;
    - installed from a wheel or the Debian package (``site-packages/cpagent``): the
      ``Version`` of the ``cpagent-*.dist-info/METADATA`` beside it, which is what
      ``importlib.metadata`` would read.

    Any other layout falls back to ``importlib.metadata``; a tree that was never installed
    and has no ``pyproject.toml`` says ``0.0.0+unknown``.
    """
    package_dir = _os.path.dirname(_os.path.abspath(__file__))
    parent = _os.path.dirname(package_dir)
    if _os.path.basename(parent) == "src":
        pyproject = _os.path.join(_os.path.dirname(parent), "pyproject.toml")
        if _os.path.isfile(pyproject):
            import tomllib

            with open(pyproject, "rb") as f:
                version = tomllib.load(f).get("project", {}).get("version")
            if isinstance(version, str):
                return version
    try:
        infos = [
            entry.path
            for entry in _os.scandir(parent)
            if entry.name.startswith("cpagent-") and entry.name.endswith(".dist-info")
        ]
    except OSError:
        infos = []
    if len(infos) == 1:
        try:
            with open(_os.path.join(infos[0], "METADATA"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
                    if not line.strip():  # the end of the headers
                        break
        except OSError:
            pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return str(version("cpagent"))
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


__version__ = _installed_version()
