"""``emolib kaggle init``: a Kaggle kernel folder you push from a terminal (``kaggle kernels push -p kaggle``)."""
from __future__ import annotations

from ..train.presets import RECIPES
from .registry import command
from .types import positive_int


@command("kaggle", "write a Kaggle kernel folder (kernel-metadata.json + the pipeline notebook) to push from a terminal")
def _kaggle(parser):
    parser.add_argument("action", choices=("init",))
    parser.add_argument("--user", required=True, metavar="NAME", help="your Kaggle user name (the kernel is NAME/emolib-cremad)")
    parser.add_argument("--recipe", choices=RECIPES, default="best", help="the training recipe (default best)")
    parser.add_argument("--folds", type=positive_int, default=None, metavar="K", help="also a K-fold speaker-independent cross-validation")
    parser.add_argument("--install", default=None, metavar="SPEC",
                        help="what the kernel pip installs (default emolib[egemaps]; e.g. 'emolib[egemaps] @ git+https://github.com/OWNER/emolib')")
    parser.add_argument("--out", default="kaggle", help="the folder to write (default kaggle)")

    def run(args):
        from ..errors import check_output_folder
        from ..train.notebook import DEFAULT_INSTALL, KERNEL_SLUG, write_kernel

        check_output_folder(args.out, f"--out {args.out}")
        folder = write_kernel(args.out, args.user, args.recipe, args.folds, args.install or DEFAULT_INSTALL)
        print(f"kernel folder: {folder} ({args.user}/{KERNEL_SLUG}; GPU and internet on; dataset ejlok1/cremad attached)")
        print(f"push it:       kaggle kernels push -p {folder}")
        print(f"follow it:     kaggle kernels status {args.user}/{KERNEL_SLUG}")
        print(f"fetch results: kaggle kernels output {args.user}/{KERNEL_SLUG} -p results   (then Predictor.from_pretrained(\"results/models\"))")

    return run
