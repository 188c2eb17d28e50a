"""Every setting of the suite, with its default. Do not edit for one experiment: copy the keys you
change into an override file in configs/ and run any script with ``--config configs/x.py``, or
change one value with ``--set KEY=VALUE``. Unknown keys and values of the wrong type are errors.

Scripts read these settings once and pass them down; nothing in utils/ imports this file.
"""
from typing import Literal

# ----------------------------------------------------------------------------- general
SEED = 1337                                  # one seed for splits, sampling, weights, batch order
KERAS_BACKEND = ""                           # "tensorflow", "jax", "torch"; "" = $KERAS_BACKEND or tensorflow
LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING"] = "INFO"  # console and log-file verbosity

# ----------------------------------------------------------------------------- dataset (step 1)
RAW_DATA = "data/raw"                        # folder-per-class root, or a CSV file listing recordings
RAW_FORMAT: Literal["auto", "folders", "csv"] = "auto"  # auto: a .csv file is a CSV, a folder is folders
CSV_PATH_COLUMN = "path"                     # CSV column with the audio path (relative to the CSV)
CSV_LABEL_COLUMN = "label"                   # CSV column with the primary label
CSV_SECONDARY_COLUMN = "secondary_labels"    # CSV column with background labels ("['a','b']" or a;b)
CSV_SPLIT_COLUMN = "split"                   # CSV column with train/val/test (other values are skipped)
CSV_GROUP_COLUMN = ""                        # CSV column of a grouping (author, site) kept for cross-validation
DATASET_DIR = "data/dataset"                 # sorted dataset: train/, val/, test/, metadata/
VAL_FRACTION = 0.2                           # share of each class's recordings held out for validation
SORT_MODE: Literal["copy", "symlink", "move"] = "copy"  # how raw files get into the dataset

# ----------------------------------------------------------------------------- spectrograms (step 2)
SAMPLE_RATE = 44100                          # Hz; files at other rates are resampled (soxr)
CHANNEL = "mean"                             # stereo/multichannel: "mean" or a channel index "0", "1"
CHUNK_LENGTH = 1.0                           # seconds per chunk (one image)
CHUNK_OVERLAP = 0.25                         # seconds shared by consecutive chunks
MIN_CHUNK_LENGTH = 1.0                       # seconds; a shorter tail is dropped, a longer one padded
SPEC_TYPE: Literal["mel", "linear"] = "mel"  # frequency scale of the image rows
FMIN = 500.0                                 # Hz, lower band limit
FMAX = 15000.0                               # Hz, upper band limit (at most SAMPLE_RATE / 2)
N_FFT = 1024                                 # FFT size (window length) in samples
HOP_LENGTH = 0                               # samples between frames; 0 = chunk samples // (IMAGE_WIDTH-1)
IMAGE_HEIGHT = 128                           # frequency rows per image
IMAGE_WIDTH = 256                            # time columns per image
PRE_EMPHASIS = 0.0                           # first-order high-pass coefficient (e.g. 0.97); 0 = off
AMPLITUDE_SCALE: Literal["db", "log_power", "pcen"] = "db"  # db: below the chunk's peak (baseline)
TOP_DB = 80.0                                # dynamic range kept below each chunk's peak (db)
NORMALIZATION: Literal["chunk", "fixed"] = "chunk"  # chunk: min-max per image; fixed: VALUE_RANGE
VALUE_RANGE = [-80.0, 0.0]                   # [low, high] mapped to [0, 1] with fixed (db: -80..0, pcen: 0..5)
SIGNAL_THRESHOLD = 0.0001                    # signal-pixel fraction below which a chunk is noise;
                                             # 0 = every chunk is signal (steady songs can look like noise)
MIN_SIGNAL_SHARE = 0.5                       # share of each recording's chunks that stay signal (its best by
                                             # the gate) even when the gate says noise: a song that never
                                             # stops looks like noise to it (BENCHMARKS.md); 0 = the gate decides
NOISE_FRACTION = 1.0                         # share of rejected (noise) chunks kept for augmentation
MAX_CHUNKS_PER_FILE = 0                      # signal chunks kept per recording (random); 0 = all
MAX_CHUNKS_PER_CLASS = 0                     # signal chunks per class, spread over its recordings; 0 = all
STORE_DIR = "data/store"                     # stores live here, one folder per settings fingerprint
SPEC_WORKERS = 0                             # worker processes for extraction; 0 = all cores
SPEC_BACKEND: Literal["processes", "dask"] = "processes"  # dask: a cluster (audio on a shared path)
DASK_SCHEDULER = ""                          # e.g. "tcp://head:8786"; "" = local cluster of SPEC_WORKERS
SEGMENT_LENGTH = 600.0                       # seconds; longer files are read in segments (memory), in parallel
STORE_SHARD_SIZE = 4096                      # chunks per store shard (the unit of resume after a crash)
EXPORT_PNG = False                           # also write every stored chunk as a PNG, to look at
PNG_DIR = ""                                 # PNG folder: <split>/<class>/, noise/<class>/; "" = <store>/png

# ----------------------------------------------------------------------------- augmentation (training batches)
AUGMENTATION: dict[str, float] = {           # name -> strength; names and meanings in utils/augment.py
    "roll_v": 0.1, "noise": 0.5, "time_mask": 0.15, "freq_mask": 0.15,
    "same_class": 1.0}                       # another recording of the class mixed in (BENCHMARKS.md)
AUGMENTATION_PROBABILITY = 0.5               # chance that a training sample is augmented at all
AUGMENTATION_COUNT = 2                       # most augmentations one sample gets (drawn at random)

# ----------------------------------------------------------------------------- model
MODEL: Literal["baseline", "resnet", "pi", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
               "efficientnet_b3"] = "resnet"  # family; efficientnet_* ignore FILTERS and the like
FILTERS = [16, 32, 64, 128]                  # filters per stage (one stage per entry), times WIDTH
KERNEL_SIZES = [3]                           # kernel size per stage; the last one repeats
BLOCKS_PER_STAGE = 1                         # blocks in each stage (wide-ResNet N)
WIDTH = 2                                    # filter multiplier (wide-ResNet K); 2 led 1 by 2-3 points on
                                             # InsectSet32's test and validation and was level to 1 ahead in
                                             # cross-validation, for 2x the training time; CPU scoring keeps
                                             # its speed through the int8 export (BENCHMARKS.md)
DOWNSAMPLING: Literal["pool", "blur", "stride"] = "pool"  # halve resolution by max pooling, by max
                                             # pooling anti-aliased (blurred before subsampling:
                                             # features move less when a call moves a row; resnet:
                                             # the stages' pools, not the stem's), or by strided convs
STEM_DOWNSAMPLING = [4, 4]                   # resnet stem shrinks [frequency, time] by 1, 2 or 4;
                                             # less in frequency keeps fine spectral lines apart
STEM_KERNEL = [5, 5]                         # resnet stem convolution's [frequency rows, time columns];
                                             # taller spans line spacings before the stem pools them
MIN_FREQUENCY_ROWS = 0                       # resnet stages stop halving the frequency axis at this many
                                             # rows (the frequency head's bands); 0 = halve in every stage
SQUEEZE_EXCITATION = False                   # resnet: each block reweights its channels by a gate computed
                                             # from their means over the chunk (SE, Hu et al. 2018)
DROP_PATH = 0.0                              # resnet: stochastic depth, the chance that a training sample
                                             # skips the deepest block's residual branch (earlier blocks
                                             # less, linearly); 0 = off
DROPOUT = 0.5                                # dropout rate in the head
DROPOUT_TYPE: Literal["random", "channel", "location"] = "random"  # units, feature maps, positions
HEAD: Literal["pool", "attention", "frequency", "frequency_global"] = "frequency_global"
                                             # frequency: mean+max over time per band (keeps pitch);
                                             # frequency_global: those and mean+max over the chunk (a
                                             # pattern counts at any pitch too; BENCHMARKS.md); pool:
                                             # global average; attention: SED head
FREQUENCY_CHANNEL = False                    # add an input channel with each row's frequency position
                                             # (then no convolution feature is the same at every pitch)
BACKGROUND_CHANNEL = False                   # add an input channel with each row's median over the chunk
                                             # subtracted: background, recorder colour (and steady songs) gone
CEPSTRUM_FEATURES = False                    # head also gets each column's cepstrum (mean, max over time):
                                             # evenly spaced lines (pulse rates, harmonics) as one peak;
                                             # not with HEAD "attention" (its scores are per frame)
DENSE_UNITS = 512                            # "pi" model: units in each of its two dense layers
MULTI_LABEL = False                          # sigmoid head trained on primary + background labels

# ----------------------------------------------------------------------------- training (step 3)
RUNS_DIR = "runs"                            # every run writes to RUNS_DIR/RUN_NAME
RUN_NAME = "default"                         # name of this experiment's run folder
EPOCHS = 30                                  # passes over the training chunks
MIXED_PRECISION: Literal["off", "float16", "bfloat16"] = "off"  # float16 on GPUs, bfloat16 on TPUs/new CPUs
DATA_PARALLEL = True                         # JAX: split batches over all accelerators (if more than one)
BATCH_THREADS = 0                            # threads building (reading, augmenting) the next training
                                             # batches while the model trains; 0 = half the CPU cores, 1-4
BATCH_SIZE = 32                              # chunks per training step
OPTIMIZER: Literal["adam", "adamw", "sgd", "nesterov"] = "adamw"  # sgd/nesterov use momentum 0.9
LEARNING_RATE = 0.001                        # learning rate at the start (after warm-up)
LEARNING_RATE_END = 0.0                      # learning rate the schedule ends at (linear, cosine[-N], step-N)
LR_SCHEDULE = "cosine"                       # constant, linear, cosine, root, step-N (a drop every N epochs),
                                             # or cosine-N (a cosine every N epochs, restarting high)
WARMUP_EPOCHS = 1.0                          # linear warm-up from 0 over this many epochs; 0 = none
WEIGHT_DECAY = 0.0001                        # decoupled weight decay (any optimizer); 0 = none
                                             # (each step shrinks weights by WEIGHT_DECAY x learning rate)
L2_WEIGHT = 0.0                              # L2 penalty on kernels added to the loss (the baseline's)
GRADIENT_CLIP = 0.0                          # clip gradients to this global norm; 0 = no clipping
WEIGHT_EMA = 0.0                             # momentum of a moving average of the weights (e.g. 0.99) that is
                                             # validated, selected and saved instead of the raw weights; 0 = off
                                             # (TensorFlow and PyTorch backends)
LOSS: Literal["crossentropy", "focal"] = "crossentropy"  # focal down-weights easy chunks
LABEL_SMOOTHING = 0.0                        # share of target mass spread over the other classes
FOCAL_GAMMA = 2.0                            # focusing parameter of the focal loss
CLASS_BALANCE: Literal["none", "weights", "sampling", "logit_adjustment"] = "none"  # for uneven classes:
                                             # weights per chunk, sampling classes equally, or the loss
                                             # adds the log training prior to the logits (Menon 2021)
SNAPSHOT_EPOCHS = 5                          # save a snapshot every N epochs; 0 = never
SELECT_METRIC: Literal["val_rec_mlrap", "val_rec_top1", "val_loss"] = "val_rec_mlrap"  # picks best.keras
SELECT_FROM = 1.0                            # best.keras only from this share of EPOCHS on: 0 = any epoch,
                                             # 1 = the last (the schedule's end; the validation curve is then
                                             # only watched: on few recordings its peaks are luck, BENCHMARKS.md)
EARLY_STOPPING = 0                           # stop after N epochs without improvement; 0 = run the whole schedule
                                             # (needs SELECT_FROM < 1: it counts from the first candidate epoch)
TENSORBOARD = False                          # also write TensorBoard logs (TensorFlow backend only)
TEACHER: list[str] = []                      # distillation: saved models whose mean scores become targets
TEACHER_WEIGHT = 1.0                         # target = (1 - w) * labels + w * teachers; 1 = teachers only
TEACHER_TEMPERATURE = 1.0                    # > 1 softens softmax teachers (like dividing logits by T)
PRETRAINED = ""                              # start from this model's weights (same MODEL; new head)
PRETRAINED_LAYERS = 0                        # copy only the first N layers; 0 = all but the head
FREEZE_PRETRAINED = False                    # keep the copied layers fixed while training

# ----------------------------------------------------------------------------- testing (step 4)
TEST_SPLIT: Literal["val", "test", "train"] = "val"  # dataset split that test.py scores
TEST_MODELS: list[str] = []                  # model files, scores averaged (an ensemble); [] = the run's best.keras
                                             # (test.py, submissions; evaluate.py tests what it trains)
TEST_MODEL_WEIGHTS: list[float] = []         # one weight per TEST_MODELS entry; [] = equal weights
TEST_TIME_SHIFTS: list[float] = []           # test-time augmentation: also score the chunk grid shifted by these seconds
TEST_TIME_ROLLS: list[float] = []            # test-time augmentation: also score every image rolled along frequency by
                                             # these shares of its height (wrapping round, as roll_v in training)
TEST_TIME_ROLL_CYCLE: list[float] = [0.03, -0.03]  # at no extra cost: a file's chunks scored in turn plain,
                                             # then rolled along frequency by each of these shares of the height (as
                                             # TEST_TIME_ROLLS), so the chunks pooled into one score see the song at
                                             # several pitches; [] = every chunk plain
POOLING: Literal["median_filtered", "mean", "max", "top_k_mean", "mean_exp", "log_mean"] = "median_filtered"
                                             # chunk -> recording scores; utils/pooling.py says what each does
POOLING_TOP_K = 3                            # top_k_mean: chunks averaged per class
POOLING_ALPHA = 5.0                          # mean_exp: 0 -> mean, large -> max
TEST_WITH_BACKGROUND = True                  # background labels count as targets (MLRAP, F1, cmAP, ROC-AUC)
CALL_THRESHOLD = 0.5                         # a class is "called" at this score: row-wise F1 and kaggle2021 rows
PREDICT_BATCH_SIZE = 128                     # chunks per model call when scoring (Keras runtime)
SCORING_RUNTIME: Literal["auto", "keras", "litert", "litert-int8"] = "auto"  # litert: the model exported to
                                             # LiteRT, run in each worker (about 2x Keras on CPU; scores checked
                                             # against Keras at export); litert-int8: int8 weights and activations
                                             # (calibrated on training chunks kept in the model file; the top class
                                             # checked); auto: litert where ai-edge-litert and TensorFlow are
                                             # installed, and in submissions int8 where that is faster on this
                                             # machine (wider models; test.py keeps the model's own float scores)

# ----------------------------------------------------------------------------- submission (step 5)
SUBMISSION_AUDIO = ""                        # folder of audio files to score; "" = the TEST_SPLIT files
SUBMISSION_FILE = ""                         # output file (a folder for raven/audacity); "" = in the run folder
SUBMISSION_FORMAT: Literal["topn_csv", "birdclef2018_mono", "birdclef2018_soundscape", "kaggle2021",
                           "kaggle_probabilities", "raven", "audacity", "detections_csv"] = "topn_csv"
                                             # docs/submission.md shows each; *_mono/topn: per file, others per window
SUBMISSION_TOP_N = 5                         # classes per file (topn_csv) or per window (birdclef2018_soundscape)
SUBMISSION_WINDOW = 5.0                      # seconds per soundscape row (BirdCLEF: 5)
SOUNDSCAPE_OVERLAP = 0.0                     # seconds shared by consecutive chunks when scoring per window (not the
                                             # spectrograms: those are the model's); -1 = the model's CHUNK_OVERLAP
WINDOW_POOLING: Literal["median_filtered", "mean", "max", "top_k_mean", "mean_exp", "log_mean"] = "max"
                                             # chunks overlapping a window -> the window's scores
DETECTION_MIN_SCORE = 0.1                    # raven, audacity, detections_csv: lower scores are not written
CLASS_MAP = ""                               # CSV: label (or scientific_name/common_name) -> code; "" = labels
CHALLENGE_CLASSES = ""                       # kaggle_probabilities: sample_submission.csv or taxonomy.csv
