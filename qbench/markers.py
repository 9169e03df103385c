"""The pluggy markers, in a module of their own so that plugins import them cheaply."""

import pluggy

PROJECT_NAME = "qbench"  # pluggy project name and entry-point group (contract)

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
