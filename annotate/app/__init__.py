"""The labelling app's library: projects and logins, items and task assignment with leases, the
judgement records a submission produces, agreement metrics, and the maths behind the learn pages.

Everything here imports without Streamlit; the pages (`annotate/app/pages/`) are loaded only by the
repository's `app.py`.
"""
