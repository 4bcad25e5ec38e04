"""Print the memory every chapter's full-scale setups need on a GPU (genlib.footprint).

    python benchmarks/full_scale_memory.py
"""
from genlib.experiment import Experiment
from genlib.experiments import declared_experiments
from genlib.footprint import training_footprint


def main() -> None:
    for cls in declared_experiments():
        name = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
        if cls.build is Experiment.build:
            print(f"{name:32s} closed form (not trained)")
            continue
        data, model, config = cls.at_scale("full").build()
        print(f"{name:32s} {training_footprint(model, data, config)}")


if __name__ == "__main__":
    main()
