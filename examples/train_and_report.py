"""Train LeNet briefly, then write the run's HTML report and print where it is.

    python examples/train_and_report.py --epochs 2

Open the printed report.html in any browser.
"""

import argparse

from cnnlab import TrainConfig, train
from cnnlab.report import write_report

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--out-dir", default=None, help="run directory (default: new, under runs/)")
parser.add_argument("--data-dir", default=None)
args = parser.parse_args()

result = train(TrainConfig(epochs=args.epochs, out_dir=args.out_dir, data_dir=args.data_dir))
print("report:", write_report(result.run_dir, args.data_dir))
