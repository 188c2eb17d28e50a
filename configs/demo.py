# The built-in demo: synthetic species at 22.05 kHz (made by demo_data.py), small and quick on a CPU.
RAW_DATA = "data/demo/raw/labels.csv"
DATASET_DIR = "data/demo/dataset"
STORE_DIR = "data/demo/store"
RUN_NAME = "demo"
SAMPLE_RATE = 22050
FMIN = 300.0
FMAX = 10000.0
EPOCHS = 12
WIDTH = 1                                    # the synthetic calls need no more; half the time
SUBMISSION_AUDIO = "data/demo/raw/unlabelled"
