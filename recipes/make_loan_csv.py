"""Write ``loan.csv``: a synthetic loan-approval table, with categorical columns and missing values,
for the ``loan.toml`` recipe (the tutorial's finance / risk application).

    python recipes/make_loan_csv.py                  # -> recipes/loan.csv (3000 rows, seed 0)
    python recipes/make_loan_csv.py --rows 500 --seed 1 --out /tmp/loan.csv

The rule (every draw from ``numpy.random.default_rng(seed)``):

    age          integer, uniform in [21, 70]
    income       yearly, log-normal: exp(N(ln 48000, 0.5)), rounded to 100
    loan_amount  income * U(0.1, 1.2), rounded to 100
    employment   salaried 55%, self_employed 20%, contract 15%, unemployed 10%
    city         Beijing, Shanghai, Shenzhen, Chengdu, Wuhan (equally likely)

    score = 1.5 ln(income / 45000) - 3 (loan_amount / income - 0.6) + 0.02 (age - 40)
            + {salaried: +0.8, self_employed: 0, contract: -0.4, unemployed: -2.0}[employment]
            + {Beijing: +0.3, Shanghai: +0.3, Shenzhen: +0.1, Chengdu: -0.2, Wuhan: -0.2}[city]
            + N(0, 0.5)                                   # the noise: what no model can predict
    approved = "yes" if score > 0 else "no"

Then 5% of the values of age, income, employment and city are blanked (missing at random; the
label was decided before, from the true values). The script prints the share of labels that the
rule without its noise term reproduces on the full data: a ceiling for any model's accuracy.
"""
import argparse
import os

import numpy as np

EMPLOYMENT = {"salaried": (0.55, 0.8), "self_employed": (0.20, 0.0), "contract": (0.15, -0.4),
              "unemployed": (0.10, -2.0)}
CITY = {"Beijing": 0.3, "Shanghai": 0.3, "Shenzhen": 0.1, "Chengdu": -0.2, "Wuhan": -0.2}
MISSING = 0.05


def make(rows=3000, seed=0):
    """The table as a pandas DataFrame, and the accuracy of the noiseless rule on it."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    age = rng.integers(21, 71, rows)
    income = np.round(np.exp(rng.normal(np.log(48000), 0.5, rows)), -2)
    loan = np.round(income * rng.uniform(0.1, 1.2, rows), -2)
    kinds = list(EMPLOYMENT)
    employment = rng.choice(kinds, rows, p=[EMPLOYMENT[k][0] for k in kinds])
    city = rng.choice(list(CITY), rows)
    rule = (1.5 * np.log(income / 45000) - 3.0 * (loan / income - 0.6) + 0.02 * (age - 40)
            + np.array([EMPLOYMENT[k][1] for k in employment]) + np.array([CITY[c] for c in city]))
    score = rule + rng.normal(0.0, 0.5, rows)
    approved = np.where(score > 0, "yes", "no")
    df = pd.DataFrame({"age": age.astype(float), "income": income, "loan_amount": loan,
                       "employment": employment.astype(object), "city": city.astype(object),
                       "approved": approved})
    for column in ("age", "income", "employment", "city"):
        df.loc[rng.random(rows) < MISSING, column] = np.nan
    ceiling = float(np.mean((rule > 0) == (score > 0)))
    return df, ceiling


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(here, "loan.csv"))
    args = p.parse_args(argv)
    df, ceiling = make(args.rows, args.seed)
    df.to_csv(args.out, index=False)
    print(f"wrote {len(df)} rows to {args.out}: {np.mean(df['approved'] == 'yes'):.1%} approved; the rule without "
          f"its noise gives {ceiling:.1%} of the labels (the accuracy ceiling)")


if __name__ == "__main__":
    main()
