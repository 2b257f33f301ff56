"""The ``greedyprune prune`` and ``greedyprune compare`` commands: :mod:`.prune` and
:mod:`.compare`, each with ``add_arguments(parser)``, ``run(args)`` and ``FLAG_NAMES`` (the loader
is :mod:`greedyprune.cli`). The jobs they run are :func:`greedyprune.prune.prune` and :func:`greedyprune.prune.compare`."""
