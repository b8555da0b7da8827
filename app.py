"""prefkit's labelling app. Start it with `prefkit app` (or `streamlit run app.py`).

The store and project come from $PREFKIT_STORE and $PREFKIT_PROJECT (set by `prefkit app`). The
pages live in annotate/app/pages/; this file only logs people in and lays out the navigation.

Who sees what (docs/security.md): everyone logged in labels and may open the DPO explorer; the
Dashboard (everyone's progress and agreement), Review and AI judges are for reviewers and admins; the
Training runs page reads files on the server, so it is for admins only.
"""

import streamlit as st
from prefkit.annotate.app.pages import annotate, dashboard, judge, learn, review
from prefkit.annotate.app.ui import current_user, login_page, logout_button

st.set_page_config(page_title="prefkit", page_icon="⚖️", layout="wide")

user = current_user()
if user is None:
    pages = [st.Page(login_page, title="Log in", url_path="login")]
else:
    logout_button(user)
    pages = {
        "Label": [st.Page(annotate.page, title="Annotate", url_path="annotate", default=True)],
        "Learn": [st.Page(learn.dpo_page, title="DPO loss explorer", url_path="dpo")],
    }
    if user.can_review:
        pages["Lead"] = [
            st.Page(dashboard.page, title="Dashboard", url_path="dashboard"),
            st.Page(review.page, title="Review", url_path="review"),
            st.Page(judge.page, title="AI judges", url_path="judge"),
        ]
    if user.is_admin:
        pages["Learn"].append(st.Page(learn.run_page, title="Training runs", url_path="run"))
st.navigation(pages).run()
