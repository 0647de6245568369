"""Ranking a sweep's configurations by their mean over seeds."""

import pytest

from medkit_exp.sweeps.summary import configuration_of, format_ranking, rank_configurations, varying_overrides


def test_the_seed_is_left_out_of_a_configuration_whatever_its_override_form():
    assert configuration_of(["trainer.lr=1e-3", "trainer.seed=2"]) == "trainer.lr=1e-3"
    assert configuration_of(["+trainer.seed=2", "component.tagging_scheme=bilou"]) == "component.tagging_scheme=bilou"
    assert configuration_of(["trainer.seed=0"]) == "(none)"
    assert configuration_of(["trainer.seeds_note=x"]) == "trainer.seeds_note=x"  # only the seed key itself
    # the folds of a cross-validation group together like seeds; the number of folds stays
    assert configuration_of(["cv.folds=5", "cv.fold=3", "trainer.lr=1e-3"]) == "cv.folds=5 trainer.lr=1e-3"


def test_configurations_are_ranked_by_mean_not_by_their_best_run():
    jobs = [("lr=a", "r1", 0.90), ("lr=a", "r2", 0.70),  # mean 0.80, holds the best single run
            ("lr=b", "r3", 0.85), ("lr=b", "r4", 0.83)]  # mean 0.84
    ranking = rank_configurations(jobs)
    assert [g.overrides for g in ranking] == ["lr=b", "lr=a"]
    best = ranking[0]
    assert best.runs == 2 and best.run_ids == ["r3", "r4"]
    assert best.mean == pytest.approx(0.84) and best.std == pytest.approx(0.0141421, rel=1e-4)
    assert best.as_dict()["min"] == 0.83 and best.as_dict()["max"] == 0.85


def test_a_minimized_objective_ranks_the_lowest_mean_first_and_single_runs_have_no_std():
    ranking = rank_configurations([("a", "r1", 0.5), ("b", "r2", 0.2)], maximize=False)
    assert [g.overrides for g in ranking] == ["b", "a"] and ranking[0].std is None


def test_the_table_lists_mean_std_and_runs_best_first_and_says_what_it_cut():
    ranking = rank_configurations([(f"lr={i}", f"r{i}", i / 10) for i in range(12)] + [("lr=11", "rx", 1.0)])
    table = format_ranking(ranking, "eval_f1", limit=3)
    lines = table.splitlines()
    assert "mean eval_f1" in lines[0]
    assert lines[2].split() == ["1.0500", "0.0707", "1.0000", "1.1000", "2", "lr=11"]
    assert lines[3].split()[1] == "-"  # one run: no standard deviation
    assert lines[-1].strip().startswith("... 9 more")


def test_the_table_shows_only_the_overrides_that_vary_between_configurations():
    configurations = ["data=ncbi trainer.lr=1e-3 threads=1", "data=ncbi trainer.lr=5e-3 threads=1"]
    assert varying_overrides(configurations) == {configurations[0]: "trainer.lr=1e-3",
                                                 configurations[1]: "trainer.lr=5e-3"}
    assert varying_overrides(["a=1"]) == {"a=1": "(same)"}
    table = format_ranking(rank_configurations([(configurations[0], "r1", 0.5), (configurations[1], "r2", 0.6)]),
                           "eval_f1")
    assert table.splitlines()[2].endswith("  trainer.lr=5e-3") and "data=ncbi" not in table
