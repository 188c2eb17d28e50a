# InsectSet32 (Faiss & Stowell 2023): 32 Orthoptera and Cicadidae species, official split.
# Only dataset facts live here: where it is, its columns and split, its sample rate, band, frequency
# scale and chunking.
RAW_DATA = "../shared/data/insectset32/metadata.csv"
CSV_LABEL_COLUMN = "species"                 # column "split" holds train/validation/test
DATASET_DIR = "data/insectset32/dataset"
STORE_DIR = "data/insectset32/store"
SORT_MODE = "symlink"                        # leave the shared copy where it is
RUN_NAME = "insectset32"
SAMPLE_RATE = 32000                          # the stored FLACs are 32 kHz
FMIN = 200.0                                 # crickets and cicadas sing low as well as high
FMAX = 16000.0
# Cicadas pulse at 300-800 Hz, which shows as spectral lines that far apart up to 16 kHz, where 128
# mel rows are 230-430 Hz wide; 256 linear rows of 62 Hz resolve them (BENCHMARKS.md: 0.718 -> 0.787).
SPEC_TYPE = "linear"
IMAGE_HEIGHT = 256
CHUNK_LENGTH = 3.0                           # grasshopper phrases and cicada pulse trains last seconds
CHUNK_OVERLAP = 2.0                          # a new chunk every second
TEST_SPLIT = "test"                          # report on the official test split
