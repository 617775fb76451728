"""The bundle wing: build and sign a bundle from checkpoints, the signing keys, the TFLite export."""
