"""Tabular data: read CSV / Parquet, then clean, scale and one-hot encode with scikit-learn.

``TabularPreprocessor`` composes scikit-learn's own transformers (``SimpleImputer``,
``StandardScaler``, ``OneHotEncoder``, ``LabelEncoder``) — it re-implements none of them. What it
adds is saving them *without pickle*: ``state_dict()`` is a JSON-able dict of the fitted numbers
(means, scales, fill values, categories, classes), and ``from_state_dict()`` rebuilds the same
transformers with those values set, so ``transform`` gives bit-identical arrays in a later process.

pandas, pyarrow and scikit-learn are the ``data`` extra, imported on first use.

>>> import json, pandas as pd
>>> df = pd.DataFrame({"age": [30, None, 50, 40], "city": ["a", "b", "a", None], "y": ["no", "yes", "no", "yes"]})
>>> pre = TabularPreprocessor(numeric=["age"], categorical=["city"], target="y").fit(df)
>>> X, y = pre.transform(df); X.dtype, X.shape, y.tolist(), pre.feature_names
(dtype('float32'), (4, 3), [0, 1, 0, 1], ['age', 'city=a', 'city=b'])
>>> again = TabularPreprocessor.from_state_dict(json.loads(json.dumps(pre.state_dict())))
>>> bool((again.transform(df)[0] == X).all()), again.inverse_transform_target(y).tolist()
(True, ['no', 'yes', 'no', 'yes'])
"""
import os

import numpy as np

__all__ = ["read_table", "TabularPreprocessor"]

_FORMAT = "tidu.data.TabularPreprocessor"


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("tidu.data needs pandas for tables (and pyarrow for Parquet): "
                          "pip install 'tidu[data]'") from None
    return pandas


def _sklearn_preprocessing():
    try:
        from sklearn import impute, preprocessing
    except ImportError:
        raise ImportError("TabularPreprocessor needs scikit-learn: pip install 'tidu[data]'") from None
    return impute, preprocessing


def _check_columns(df, wanted, who):
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: unknown column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)}; the table has columns {list(df.columns)}")


def read_table(source, columns=None):
    """A pandas DataFrame from a CSV / TSV / Parquet file, a DataFrame, a dict of columns or a 2-D array.

    ``columns`` picks (and checks) the columns to keep. Missing and empty files, tables without rows
    and unknown columns are refused with the file and the problem named.

    >>> read_table({"a": [1, 2], "b": [3.0, 4.0]}, columns=["b"]).shape
    (2, 1)
    >>> read_table({"a": [1, 2]}, columns=["c"])
    Traceback (most recent call last):
    ...
    ValueError: read_table: unknown column 'c'; the table has columns ['a']
    """
    pd = _pandas()
    name = "the table"
    if isinstance(source, pd.DataFrame):
        df = source
    elif isinstance(source, (str, os.PathLike)):
        df, name = _read_file(pd, os.fspath(source)), repr(os.fspath(source))
    elif isinstance(source, dict):
        df = pd.DataFrame(source)
    elif isinstance(source, np.ndarray) and source.ndim == 2:
        df = pd.DataFrame(source, columns=[f"x{i}" for i in range(source.shape[1])])
    else:
        raise TypeError("read_table: expected a path to a .csv/.tsv/.parquet file, a pandas DataFrame, a dict of "
                        f"columns or a 2-D array; got {type(source).__name__}")
    if len(df.columns) == 0:
        raise ValueError(f"read_table: {name} has no columns")
    if len(df) == 0:
        raise ValueError(f"read_table: {name} has " + ("a header but no rows" if name != "the table" else "no rows"))
    if columns is not None:
        _check_columns(df, list(columns), "read_table")
        df = df[list(columns)]
    return df


def _read_file(pd, path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_table: no such file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"read_table: {path!r} is a directory, not a table file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"read_table: {path!r} is empty (no header, no rows)")
    ext = os.path.splitext(path)[1].lower()
    csv, tsv = ("CSV", lambda: pd.read_csv(path)), ("TSV", lambda: pd.read_csv(path, sep="\t"))
    parquet = ("Parquet", lambda: pd.read_parquet(path))
    readers = {".csv": csv, ".txt": csv, ".tsv": tsv, ".parquet": parquet, ".pq": parquet}
    if ext not in readers:
        raise ValueError(f"read_table: cannot tell the format of {path!r} from its extension {ext!r}; "
                         f"expected one of {sorted(readers)}")
    kind, read = readers[ext]
    try:
        return read()
    except ImportError:
        raise ImportError(f"read_table: reading {kind} needs pyarrow: pip install 'tidu[data]'") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"read_table: {path!r} is empty (no header, no rows)") from None
    except Exception as e:  # a parser's own error, with the file named
        raise ValueError(f"read_table: cannot read {path!r} as {kind}: {e}") from e


def _category_strings(series):
    """Categories as strings (JSON-able, and the same whether pandas read a column as int or float):
    3 and 3.0 both become '3'; missing values become NaN."""
    pd = _pandas()
    missing = series.isna().to_numpy()
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        out = series.astype(str).to_numpy(dtype=object)
    elif pd.api.types.is_float_dtype(series):
        v = series.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = (np.abs(v) < 2.0**53) & (np.mod(v, 1) == 0)  # exactly an integer: print it as one
        out = v.astype(str).astype(object)
        out[whole] = v[whole].astype(np.int64).astype(str)
    else:  # text, or mixed Python objects
        out = np.array([v if isinstance(v, str) else
                        str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)
                        for v in series.tolist()], dtype=object)
    out[missing] = np.nan
    return out


def _numeric(series, column, who):
    """A float64 array; a value that is not a number is refused with the column and an example."""
    pd = _pandas()
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna().to_numpy() & ~series.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{who}: numeric column {column!r} has a non-numeric value {series.iloc[row]!r} "
                         f"(row {row}); fix the data or list the column as categorical")
    out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        row = int(np.flatnonzero(np.isinf(out))[0])
        raise ValueError(f"{who}: numeric column {column!r} has an infinite value (row {row})")
    return out


class TabularPreprocessor:
    """Turn a DataFrame into a float32 feature matrix (and a target), the same way every time.

    Numeric columns: missing values filled (``numeric_impute``: 'mean', 'median', 'most_frequent'
    or 'constant' = 0), then standardized (``scale=True``). Categorical columns: values read as text,
    missing ones filled (``categorical_impute``: 'most_frequent', or 'constant' = a "missing"
    category), then one-hot encoded; a category never seen in training gives all zeros
    (``handle_unknown='ignore'``) or an error (``'error'``). The target: classes mapped to
    0..C-1 (``task='classification'``), or floats, optionally standardized (``scale_target``).

    Without ``numeric`` and ``categorical``, every non-target column is used, numbers as numeric.
    Fit on the training split only.
    """

    def __init__(self, numeric=None, categorical=None, target=None, task="classification", numeric_impute="mean",
                 categorical_impute="most_frequent", scale=True, handle_unknown="ignore", scale_target=False):
        who = "TabularPreprocessor"
        if task not in ("classification", "regression"):
            raise ValueError(f"{who}: task must be 'classification' or 'regression', got {task!r}")
        if numeric_impute not in ("mean", "median", "most_frequent", "constant"):
            raise ValueError(f"{who}: numeric_impute must be 'mean', 'median', 'most_frequent' or 'constant', "
                             f"got {numeric_impute!r}")
        if categorical_impute not in ("most_frequent", "constant"):
            raise ValueError(f"{who}: categorical_impute must be 'most_frequent' or 'constant', "
                             f"got {categorical_impute!r}")
        if handle_unknown not in ("ignore", "error"):
            raise ValueError(f"{who}: handle_unknown must be 'ignore' or 'error', got {handle_unknown!r}")
        if scale_target and task != "regression":
            raise ValueError(f"{who}: scale_target=True only makes sense for task='regression'")
        for name, cols in (("numeric", numeric), ("categorical", categorical)):
            if isinstance(cols, str):
                raise TypeError(f"{who}: {name} must be a list of column names, got the string {cols!r}")
        self.numeric = None if numeric is None else list(numeric)
        self.categorical = None if categorical is None else list(categorical)
        both = [c for c in (self.numeric or []) if c in (self.categorical or [])]
        if both:
            raise ValueError(f"{who}: columns {both} are listed as both numeric and categorical")
        if target is not None and target in (self.numeric or []) + (self.categorical or []):
            raise ValueError(f"{who}: the target {target!r} is also listed as a feature")
        self.target, self.task = target, task
        self.numeric_impute, self.categorical_impute = numeric_impute, categorical_impute
        self.scale, self.handle_unknown, self.scale_target = bool(scale), handle_unknown, bool(scale_target)
        self.fitted = False

    # --- fit ---
    def fit(self, data):
        """Learn fill values, means, scales, categories and classes from the training table."""
        who = "TabularPreprocessor.fit"
        self.fitted = False
        df = read_table(data)
        if self.target is not None:
            _check_columns(df, [self.target], who)
        if self.numeric is None and self.categorical is None:
            pd = _pandas()
            features = [c for c in df.columns if c != self.target]
            self.numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c])]
            self.categorical = [c for c in features if c not in self.numeric]
        self.numeric, self.categorical = list(self.numeric or []), list(self.categorical or [])
        if not self.numeric and not self.categorical:
            raise ValueError(f"{who}: no feature columns (numeric and categorical are both empty)")
        _check_columns(df, self.numeric + self.categorical, who)
        for c in self.numeric + self.categorical:
            if df[c].isna().all():
                raise ValueError(f"{who}: column {c!r} has no values in the training data (all missing)")
        impute, prep = _sklearn_preprocessing()

        self.numeric_imputer_ = self.scaler_ = self.categorical_imputer_ = self.encoder_ = None
        if self.numeric:
            X = np.column_stack([_numeric(df[c], c, who) for c in self.numeric])
            self.numeric_imputer_ = impute.SimpleImputer(strategy=self.numeric_impute, fill_value=0.0).fit(X)
            if self.scale:
                self.scaler_ = prep.StandardScaler().fit(self.numeric_imputer_.transform(X))
        if self.categorical:
            C = np.column_stack([_category_strings(df[c]) for c in self.categorical])
            self.categorical_imputer_ = impute.SimpleImputer(strategy=self.categorical_impute, missing_values=np.nan,
                                                             fill_value="missing").fit(C)
            self.encoder_ = prep.OneHotEncoder(handle_unknown=self.handle_unknown, sparse_output=False,
                                               dtype=np.float32).fit(self.categorical_imputer_.transform(C))

        self.label_encoder_ = self.target_scaler_ = None
        self.class_kind_ = None
        if self.target is not None:
            if self.task == "classification":
                labels, self.class_kind_ = self._labels(df[self.target], who, fitting=True)
                self.label_encoder_ = prep.LabelEncoder().fit(labels)
            else:
                y = self._regression_target(df[self.target], who)
                if self.scale_target:
                    self.target_scaler_ = prep.StandardScaler().fit(y.reshape(-1, 1))
        self.fitted = True
        return self

    def fit_transform(self, data):
        return self.fit(data).transform(data)

    # --- the target ---
    def _labels(self, series, who, fitting=False):
        """Class labels as int64 (integer-valued columns) or str, matching what training saw."""
        pd = _pandas()
        missing = series.isna().to_numpy()
        if missing.any():
            rows = np.flatnonzero(missing)
            shown = str(rows[:5].tolist())[:-1] + (", ...]" if len(rows) > 5 else "]")
            raise ValueError(f"{who}: the target column {self.target!r} has {len(rows)} missing "
                             f"value(s) (rows {shown}); drop those rows or fill them")
        kind = self.class_kind_
        if fitting:
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            values = series.to_numpy()
            kind = "int" if numeric and np.all(np.mod(values.astype(np.float64), 1) == 0) else "str"
        if kind == "int":
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(values) | (np.mod(values, 1) != 0)
            if bad.any():  # not a class this integer-labelled model knows
                raise ValueError(f"{who}: the target column {self.target!r} has a label never seen in training: "
                                 f"{series.iloc[int(np.flatnonzero(bad)[0])]!r} (known classes: {self.classes})")
            return values.astype(np.int64), kind
        return _category_strings(series).astype(str), kind

    def _regression_target(self, series, who):
        missing = series.isna().to_numpy()
        if missing.any():
            raise ValueError(f"{who}: the target column {self.target!r} has {int(missing.sum())} missing value(s)")
        return _numeric(series, self.target, who)

    @property
    def classes(self):
        """The class labels, in the order of their indices (classification), else None."""
        return None if self.label_encoder_ is None else self.label_encoder_.classes_.tolist()

    @property
    def feature_names(self):
        """One name per output column: numeric columns, then 'column=category' for each one-hot column."""
        self._check_fitted("feature_names")
        names = list(self.numeric)
        if self.encoder_ is not None:
            for col, cats in zip(self.categorical, self.encoder_.categories_):
                names += [f"{col}={c}" for c in cats]
        return names

    def _check_fitted(self, what):
        if not self.fitted:
            raise RuntimeError(f"TabularPreprocessor.{what}: call fit(train_df) (or from_state_dict) first")

    # --- transform ---
    def transform(self, data):
        """``(X, y)``: X a float32 array (rows x ``feature_names``); y int64 class indices or float32
        values, or None when the table has no target column (raw rows to predict on)."""
        who = "TabularPreprocessor.transform"
        self._check_fitted("transform")
        df = read_table(data)
        _check_columns(df, self.numeric + self.categorical, who)
        parts = []
        if self.numeric:
            X = np.column_stack([_numeric(df[c], c, who) for c in self.numeric])
            X = self.numeric_imputer_.transform(X)
            if self.scaler_ is not None:
                X = self.scaler_.transform(X)
            parts.append(X.astype(np.float32))
        if self.categorical:
            C = self.categorical_imputer_.transform(
                np.column_stack([_category_strings(df[c]) for c in self.categorical]))
            if self.handle_unknown == "error":
                for j, (col, cats) in enumerate(zip(self.categorical, self.encoder_.categories_)):
                    unseen = ~np.isin(C[:, j], cats)
                    if unseen.any():
                        raise ValueError(f"{who}: column {col!r} has a category never seen in training: "
                                         f"{C[np.flatnonzero(unseen)[0], j]!r} (known: {cats.tolist()}); "
                                         "use handle_unknown='ignore' to encode it as all zeros")
            parts.append(self.encoder_.transform(C))
        X = np.hstack(parts) if len(parts) > 1 else parts[0]

        y = None
        if self.target is not None and self.target in df.columns:
            if self.task == "classification":
                labels, _ = self._labels(df[self.target], who)
                known = self.label_encoder_.classes_
                unseen = ~np.isin(labels, known)
                if unseen.any():
                    raise ValueError(f"{who}: the target column {self.target!r} has a label never seen in training: "
                                     f"{labels[np.flatnonzero(unseen)[0]].item()!r} (known classes: {self.classes})")
                y = self.label_encoder_.transform(labels).astype(np.int64)
            else:
                y = self._regression_target(df[self.target], who)
                if self.target_scaler_ is not None:
                    y = self.target_scaler_.transform(y.reshape(-1, 1)).ravel()
                y = y.astype(np.float32)
        return X, y

    def inverse_transform_target(self, y):
        """Model outputs back to the target's own terms: class indices (or a 2-D array of scores,
        reduced by argmax) to class labels; standardized values to the original scale."""
        self._check_fitted("inverse_transform_target")
        y = np.asarray(y.data if hasattr(y, "requires_grad") else y)
        if self.task == "classification":
            if self.label_encoder_ is None:
                raise ValueError("TabularPreprocessor.inverse_transform_target: fitted without a target")
            if y.ndim == 2:
                y = y.argmax(axis=1)
            if y.dtype.kind not in "iu":
                raise TypeError(f"TabularPreprocessor.inverse_transform_target: expected class indices "
                                f"(integers), got {y.dtype}")
            n = len(self.label_encoder_.classes_)
            if y.size and (y.min() < 0 or y.max() >= n):
                raise ValueError(f"TabularPreprocessor.inverse_transform_target: class indices must lie in "
                                 f"[0, {n}), got {y.min()}..{y.max()}")
            return self.label_encoder_.inverse_transform(y.ravel()).reshape(y.shape)
        y = y.astype(np.float64)
        if self.target_scaler_ is not None:
            y = self.target_scaler_.inverse_transform(y.reshape(-1, 1)).reshape(y.shape)
        return y

    # --- saving without pickle ---
    def state_dict(self):
        """Every fitted number as JSON-able lists, plus the options and column lists."""
        self._check_fitted("state_dict")
        state = {"format": _FORMAT, "version": 1, "numeric": self.numeric, "categorical": self.categorical,
                 "target": self.target, "task": self.task, "numeric_impute": self.numeric_impute,
                 "categorical_impute": self.categorical_impute, "scale": self.scale,
                 "handle_unknown": self.handle_unknown, "scale_target": self.scale_target,
                 "feature_names": self.feature_names}
        if self.numeric_imputer_ is not None:
            state["numeric_fill"] = self.numeric_imputer_.statistics_.astype(np.float64).tolist()
        if self.scaler_ is not None:
            state["scaler"] = _scaler_state(self.scaler_)
        if self.encoder_ is not None:
            state["categorical_fill"] = [str(v) for v in self.categorical_imputer_.statistics_]
            state["categories"] = [c.tolist() for c in self.encoder_.categories_]
        if self.label_encoder_ is not None:
            state["classes"] = self.label_encoder_.classes_.tolist()
            state["class_kind"] = self.class_kind_
        if self.target_scaler_ is not None:
            state["target_scaler"] = _scaler_state(self.target_scaler_)
        return state

    @classmethod
    def from_state_dict(cls, state):
        """Rebuild the fitted scikit-learn transformers from ``state_dict()`` (no refitting on data)."""
        who = "TabularPreprocessor.from_state_dict"
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{who}: not a TabularPreprocessor state (expected format {_FORMAT!r})")
        if state.get("version") != 1:
            raise ValueError(f"{who}: unsupported state version {state.get('version')!r} (this tidu reads 1)")
        try:
            self = cls(numeric=state["numeric"], categorical=state["categorical"], target=state["target"],
                       task=state["task"], numeric_impute=state["numeric_impute"],
                       categorical_impute=state["categorical_impute"], scale=state["scale"],
                       handle_unknown=state["handle_unknown"], scale_target=state["scale_target"])
            impute, prep = _sklearn_preprocessing()
            self.numeric_imputer_ = self.scaler_ = self.categorical_imputer_ = self.encoder_ = None
            if self.numeric:
                fill = np.asarray(state["numeric_fill"], dtype=np.float64)
                # Fitting on one row of the fill values sets every internal attribute; then the values
                # themselves are set, exactly.
                self.numeric_imputer_ = impute.SimpleImputer(strategy=self.numeric_impute, fill_value=0.0).fit(
                    fill.reshape(1, -1))
                self.numeric_imputer_.statistics_ = fill
                if self.scale:
                    self.scaler_ = _scaler_from_state(prep, state["scaler"])
            if self.categorical:
                fill = np.asarray(state["categorical_fill"], dtype=object)
                self.categorical_imputer_ = impute.SimpleImputer(
                    strategy=self.categorical_impute, missing_values=np.nan, fill_value="missing").fit(
                    fill.reshape(1, -1))
                self.categorical_imputer_.statistics_ = fill
                cats = [np.asarray(c, dtype=object) for c in state["categories"]]
                width = max(len(c) for c in cats)
                rows = np.array([[c[min(i, len(c) - 1)] for c in cats] for i in range(width)], dtype=object)
                self.encoder_ = prep.OneHotEncoder(categories=cats, handle_unknown=self.handle_unknown,
                                                   sparse_output=False, dtype=np.float32).fit(rows)
            self.label_encoder_ = self.target_scaler_ = None
            self.class_kind_ = state.get("class_kind")
            if state.get("classes") is not None:
                self.label_encoder_ = prep.LabelEncoder()
                self.label_encoder_.classes_ = np.asarray(
                    state["classes"], dtype=np.int64 if self.class_kind_ == "int" else str)
            if state.get("target_scaler") is not None:
                self.target_scaler_ = _scaler_from_state(prep, state["target_scaler"])
        except KeyError as e:
            raise ValueError(f"{who}: the state has no {e.args[0]!r}; it is incomplete or from another version") \
                from None
        self.fitted = True
        if self.feature_names != state["feature_names"]:
            raise ValueError(f"{who}: the state is inconsistent: its categories give features {self.feature_names}, "
                             f"but it lists {state['feature_names']}")
        return self

    def __repr__(self):
        return (f"TabularPreprocessor(numeric={self.numeric}, categorical={self.categorical}, "
                f"target={self.target!r}, task={self.task!r}, fitted={self.fitted})")


def _scaler_state(scaler):
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "var": scaler.var_.tolist(),
            "n_samples_seen": int(np.max(scaler.n_samples_seen_))}


def _scaler_from_state(prep, s):
    mean = np.asarray(s["mean"], dtype=np.float64)
    scaler = prep.StandardScaler().fit(mean.reshape(1, -1))
    scaler.mean_, scaler.scale_ = mean, np.asarray(s["scale"], dtype=np.float64)
    scaler.var_, scaler.n_samples_seen_ = np.asarray(s["var"], dtype=np.float64), int(s["n_samples_seen"])
    return scaler
