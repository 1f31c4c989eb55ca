"""Token ids shared by the data pipeline, which writes them, and the model, which reads them."""

IMAGE_TOKEN = -200  # placeholder id of a visual token (as LLaVA/Cambrian's IMAGE_TOKEN_INDEX)
