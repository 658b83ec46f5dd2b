import sys
from pathlib import Path

# the Pulumi program's modules import each other as top-level modules (Pulumi runs infra/ as a directory)
INFRA = Path(__file__).resolve().parents[2] / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))
