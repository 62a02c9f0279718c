"""The web app (gradio lives here and nowhere else)."""
