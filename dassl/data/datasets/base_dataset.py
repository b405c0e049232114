"""``Datum`` (one labelled image) and ``DatasetBase`` (train/val/test lists of them)."""
import random
from collections import defaultdict


class Datum:
    """One data item: an image path with its class label, domain label and class name.

    Read-only after construction. Unlike Dassl, the constructor does not stat the
    file: datasets check their images once, in bulk, so the error can name every
    missing path instead of failing on the first one.
    """

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self):
        """Path of the image file."""
        return self._impath

    @property
    def label(self):
        """Integer class label."""
        return self._label

    @property
    def domain(self):
        """Integer domain label (0 when the dataset has a single domain)."""
        return self._domain

    @property
    def classname(self):
        """Human-readable class name used to build text prompts."""
        return self._classname

    def __getstate__(self):
        return {name[1:]: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        """Restore from a pickle: ours (``{"impath": ...}``), or the original Dassl's.

        The original ``Datum`` keeps ``_impath``, ``_label``, ``_domain`` and ``_classname`` in
        an instance ``__dict__`` (pickled as that dict), and CoOp-style dataset classes cache
        few-shot splits as such pickles (``split_fewshot/shot_K-seed_S.pkl``). Older pickles of
        this class carry ``(None, {"_impath": ...})`` (the default slots state).
        """
        if isinstance(state, tuple) and len(state) == 2 and state[0] is None:
            state = state[1]
        if not isinstance(state, dict):
            raise TypeError(f"cannot unpickle Datum from a {type(state).__name__} state")
        fields = {key.lstrip("_"): value for key, value in state.items()}
        unknown = sorted(set(fields) - {"impath", "label", "domain", "classname"})
        if unknown:
            raise TypeError(f"cannot unpickle Datum: unknown field(s) {unknown}")
        Datum.__init__(self, **fields)

    def __repr__(self):
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, "
            f"domain={self._domain}, classname={self._classname!r})"
        )


class DatasetBase:
    """Container of labelled (``train_x``), unlabelled (``train_u``), validation and test data.

    Each split is a list of ``Datum``. The label space (``num_classes``,
    ``lab2cname``, ``classnames``) is read from ``train_x``. Subclasses set the
    class attributes ``dataset_dir`` (folder name under the data root) and
    ``domains`` (names of the domains, for domain adaptation/generalization).
    """

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        """Labelled training data (list of Datum)."""
        return self._train_x

    @property
    def train_u(self):
        """Unlabelled training data (list of Datum) or None."""
        return self._train_u

    @property
    def val(self):
        """Validation data (list of Datum) or None."""
        return self._val

    @property
    def test(self):
        """Test data (list of Datum)."""
        return self._test

    @property
    def lab2cname(self):
        """Dict label -> class name."""
        return self._lab2cname

    @property
    def classnames(self):
        """Class names ordered by label."""
        return self._classnames

    @property
    def num_classes(self):
        """Number of classes (largest label + 1)."""
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source):
        """Return the largest label in ``data_source`` plus one."""
        if not data_source:
            raise ValueError("cannot count classes: the training data (train_x) is empty")
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        """Return ``(label -> class name dict, class names sorted by label)`` for ``data_source``."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains):
        """Raise ``ValueError`` unless both domain lists are non-empty and name known domains."""
        if len(source_domains) == 0:
            raise ValueError("source_domains is empty (set DATASET.SOURCE_DOMAINS)")
        if len(target_domains) == 0:
            raise ValueError("target_domains is empty (set DATASET.TARGET_DOMAINS)")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains):
        """Raise ``ValueError`` naming the first domain that is not in ``self.domains``."""
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(
                    f"unknown domain {domain!r} for {type(self).__name__}; known: {self.domains}"
                )

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False, strict=False):
        """Keep ``num_shots`` random items per class from each data source.

        Draws with Python's global ``random`` exactly as Dassl does (classes in
        order of first appearance, ``random.sample`` per class, or
        ``random.choices`` when ``repeat`` and the class is too small), so the
        same seed selects the same images. With ``num_shots < 1`` the sources are
        returned unchanged. A class with fewer than ``num_shots`` items is kept
        whole, as in Dassl, unless ``strict`` is True: then it raises ``ValueError``
        naming the class (our datasets do that for the training split, where
        too few shots would silently change the protocol).

        Returns one list for one source, else a list of lists.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources

        print(f"Sampling {num_shots} examples per class")
        output = []
        for source_index, data_source in enumerate(data_sources):
            sampled = []
            for label, items in self.split_dataset_by_label(data_source).items():
                if len(items) >= num_shots:
                    sampled.extend(random.sample(items, num_shots))
                elif repeat:
                    sampled.extend(random.choices(items, k=num_shots))
                elif not strict:
                    sampled.extend(items)
                else:
                    where = f" in data source #{source_index}" if len(data_sources) > 1 else ""
                    raise ValueError(
                        f"cannot take {num_shots} shots per class: class {items[0].classname!r} "
                        f"(label {label}){where} has only {len(items)} item(s); "
                        f"lower DATASET.NUM_SHOTS"
                    )
            output.append(sampled)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def _group_by(data_source, key):
        groups = defaultdict(list)
        for item in data_source:
            groups[key(item)].append(item)
        return groups

    def split_dataset_by_label(self, data_source):
        """Group ``data_source`` into ``{label: [Datum, ...]}`` (labels in order of first appearance)."""
        return self._group_by(data_source, lambda item: item.label)

    def split_dataset_by_domain(self, data_source):
        """Group ``data_source`` into ``{domain: [Datum, ...]}`` (domains in order of first appearance)."""
        return self._group_by(data_source, lambda item: item.domain)
