"""The scaling study: how the gain from English intermediate training grows with the number of
intermediate tasks k and with model size. `study` reads a study file (an experiment plus a
`study:` section), `design` draws the balanced task subsets and expands the cells, `sweep` runs
the cells that have not finished (resumable, with a cost estimate from measured unit times),
`gains` bootstraps gains over subsets, seeds and test items, `fits` compares laws of gain vs k
and size, and `analysis` writes the answer (tables, plots, a Markdown summary)."""
