"""What users pass to ``ingest`` -> batches of masks with typed metadata for the store.

Sources (arrays, tensors, files, COCO annotations) become ``MaskItem``s, loaded one at a
time; metadata tables are read, joined to files by key, and checked; every refusal names
the file, row or column and happens before anything is committed.
"""
