"""Print the memory every chapter's full-scale setups need on a GPU (genlib.running.footprint).

    python benchmarks/full_scale_memory.py
"""
import tempfile

from genlib.experiments import declared_experiments
from genlib.running.experiment import TrainedExperiment
from genlib.running.footprint import build_at_full_scale, training_footprint


def main() -> None:
    for cls in declared_experiments():
        name = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
        if not issubclass(cls, TrainedExperiment):
            print(f"{name:32s} closed form (not trained)")
            continue
        with tempfile.TemporaryDirectory() as scratch:  # requirements trained 2 steps, then thrown away
            _, data, model, config = build_at_full_scale(cls, scratch)
        print(f"{name:32s} {training_footprint(model, data, config)}")


if __name__ == "__main__":
    main()
