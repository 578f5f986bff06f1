"""What the study's notebooks call: one module per notebook, so a notebook stays prose, a call and a table.

==============  ================================  ===============================================================
module          notebook                          what it does
==============  ================================  ===============================================================
``common``      all                               metrics.json I/O, dataset specs, CMC summaries, inline figures
``data``        ``00_data``                       split statistics, image check, sample grids
``train``       ``10_train``                      train one model on one dataset, test once, zero-shot
``finetune``    ``20_finetune``                   fine-tune a trained model on the other domain
``distance``    ``30_distance_study``             five distances (and re-ranking) on stored features
``report``      ``40_report``                     the paper's tables and figures from every run's metrics.json
==============  ================================  ===============================================================

Runs talk through files: each notebook writes ``metrics.json`` into its run directory; checkpoints and stored
features live in the run's work directory, outside ``results/``. A notebook imports only its own stage module
(and ``common``), and the pipeline hashes only the code a stage imports: editing ``distance`` leaves every
training run up to date.
"""
