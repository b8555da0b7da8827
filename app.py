"""prefkit's labelling app. Start it with `prefkit app` (or `streamlit run app.py`).

The store and project come from $PREFKIT_STORE and $PREFKIT_PROJECT (set by `prefkit app`). The
pages live in annotate/app/pages/; this file only logs people in and lays out the navigation.
"""

import streamlit as st

from annotate.app.pages import annotate, dashboard, learn, review
from annotate.app.ui import current_user, login_page, logout_button

st.set_page_config(page_title="prefkit", page_icon="⚖️", layout="wide")

user = current_user()
if user is None:
    pages = [st.Page(login_page, title="Log in", url_path="login")]
else:
    logout_button(user)
    pages = {
        "Label": [st.Page(annotate.page, title="Annotate", url_path="annotate", default=True)],
        "Lead": [st.Page(dashboard.page, title="Dashboard", url_path="dashboard")],
        "Learn": [
            st.Page(learn.dpo_page, title="DPO loss explorer", url_path="dpo"),
            st.Page(learn.run_page, title="Training run", url_path="run"),
        ],
    }
    if user.can_review:
        pages["Lead"].append(st.Page(review.page, title="Review", url_path="review"))
st.navigation(pages).run()
