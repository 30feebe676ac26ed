"""The names that several commands accept, in one place (and free of torch, so argument parsing is cheap)."""

DEVICES = ("auto", "cpu", "cuda")
# Test-time views and how many each averages (section 4.1 of the paper: ten patches, corners and centre,
# and their mirrors).
VIEW_COUNTS = {"center": 1, "flip": 2, "tencrop": 10}
VIEWS = tuple(VIEW_COUNTS)
NORMALIZATIONS = ("channel", "pixel", "none")
PCA_SCALES = ("std", "eigenvalue")
SCHEDULES = ("plateau", "onecycle", "constant")
PROGRESS = ("auto", "bar", "lines", "none")
RECIPES = ("paper", "fast")
# The named data sets (cnnlab.data.sources.LOADERS holds their readers; a test keeps the two in step),
# and the folder form any image folder takes.
DATASETS = ("fashion-mnist", "mnist", "cifar10", "digits")
FOLDER_DATASET = "folder:PATH"
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")
