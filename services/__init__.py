"""Services layer: everything the app does, with no Streamlit imports."""
