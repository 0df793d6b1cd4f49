"""``python -m train ...``: the same command as ``curate train ...``."""

from curate.cli.train_cmd import train_app

if __name__ == "__main__":
    train_app(prog_name="python -m train")
