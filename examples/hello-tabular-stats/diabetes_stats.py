"""hello-tabular-stats: each site's statistics generator (the sites import this module).

Every site holds a third of scikit-learn's diabetes data (442 patients, 10 measurements and
the disease progression a year later), as a pandas DataFrame. DataFrameStatistics computes
every statistic from it; Ember checks and noises them at the site before anything is sent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ember.statistics import DataFrameStatistics, StatsContext


class DiabetesStatistics(DataFrameStatistics):
    """This site's part of the diabetes data: the rows are cut into ``len(sites)`` blocks,
    one per site, in the order of ``sites``."""

    def __init__(self, sites: list[str]) -> None:
        super().__init__()
        self.sites = sites

    def load_data(self, ctx: StatsContext) -> dict[str, pd.DataFrame]:
        from sklearn.datasets import load_diabetes

        frame = load_diabetes(as_frame=True, scaled=False).frame
        blocks = np.array_split(np.arange(len(frame)), len(self.sites))
        rows = blocks[self.sites.index(ctx.site_name)]
        return {"diabetes": frame.iloc[rows].reset_index(drop=True)}
