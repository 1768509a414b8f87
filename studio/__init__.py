"""The Gradio studio: its logic, kept out of app.py and the `ui_*` modules so that it is tested without a browser.

One job per module: `paths` (where things live), `thresholds` (the four user-facing knobs), `cache`
(validation candidates on disk), `lru` (the bounded in-memory cache), `session` (model loaded once, candidate
caches), `uploads` (reading uploads within memory bounds), `tempfiles` (the app's one bounded temp folder),
`drawing` (boxes on images), `plots` (matplotlib figures), `detect` (the Detect tab's work), `failures` (the
failure-browser aggregation), `validation` (the Validation tab's views), `review` (the annotation review store
and its corrected export), `review_views` (the Annotation review tab's views); `ui_controls` (the shared
threshold controls) and `ui_*` (one Gradio tab each) only wire these to Gradio.
"""
