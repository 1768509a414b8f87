"""The Gradio studio's logic, kept out of app.py so that it can be tested without a browser.

One job per module: `paths` (where things live), `thresholds` (the four user-facing knobs), `cache`
(validation candidates on disk), `lru` (the bounded in-memory cache), `session` (model loaded once, candidate
caches), `uploads` (reading uploads within memory bounds), `tempfiles` (the app's one bounded temp folder),
`drawing` (boxes on images), `failures` (the failure-browser aggregation), `plots` (matplotlib figures),
`review` (the annotation review store), and `ui_*` (one Gradio tab each).
"""
