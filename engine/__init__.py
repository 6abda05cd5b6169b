"""tunetop's engine: everything without a screen.

The modules directly under engine/ (profiles, run directories, events, launch, telemetry, estimate) are
light: importing them never imports torch, transformers, trl, peft, bitsandbytes or datasets, so the
dashboard can use them and still start in a fraction of a second. The heavy training code lives in
engine/train/ and only runs inside the detached engine process.
"""
