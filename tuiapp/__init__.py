"""tunetop's screen side: the `tunetop` command and the Textual dashboard.

Nothing here imports torch, transformers, trl, peft, bitsandbytes or datasets: the app reads run
directories and telemetry and controls runs through engine's light modules.
"""
