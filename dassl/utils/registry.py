"""A name -> object registry, the mechanism behind TRAINER_REGISTRY, DATASET_REGISTRY, ..."""
import difflib


class Registry:
    """Maps names to classes or functions.

    Use as a decorator (``@REG.register()``) or call ``REG.register(obj)``.
    ``get`` raises a ``KeyError`` that lists the registered names closest to
    the unknown one, so a typo in a config file is a one-line fix.
    """

    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in the "{self._name}" registry'
            )
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        """Register ``obj`` under its ``__name__``; without ``obj`` return a decorator."""
        if obj is None:

            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name):
        """Return the object registered as ``name``; unknown names raise with close matches."""
        if name not in self._obj_map:
            close = difflib.get_close_matches(str(name), self._obj_map.keys(), n=3, cutoff=0.5)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise KeyError(
                f'no {self._name.lower()} named "{name}"{hint}; '
                f"registered: {', '.join(sorted(self._obj_map))}"
            )
        return self._obj_map[name]

    def registered_names(self):
        """Names in registration order."""
        return list(self._obj_map.keys())

    def __contains__(self, name):
        return name in self._obj_map
