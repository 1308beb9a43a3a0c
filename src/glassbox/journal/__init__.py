"""The machinery that runs and renders the journal's notebooks. Nothing here is needed to use
glassbox's tools on your own model.

    paths      where the repository keeps data, checkpoints, notebooks and findings; atomic writes
    record     promotion into the record, all or nothing across files; recovery after a kill; locks
    parameters the parameters cell's rules (ranges, allowed values) and their checks
    contract   the run contract: `start` / `finish`, seeds, threads, the run's staging folder
    findings   `record` a notebook's numbers; `load` them back; `markdown` prose from them
    exercises  stubs in the notebook, solutions and checkers in notebooks/solutions/NN.py; folded answers
    catalogue  the numbered notebooks, their titles and headlines, the README table
    lab        JupyterLab on a working copy in build/lab/, so autosave never touches the record
    library    the website's library page: the tools' public API and an example per module, from the code
    render     the offline HTML journal
    runner     `python -m glassbox.journal run | render | readme | verify | recover | lab`

Imports only go down this list (no cycles).
"""
