"""Item and user data: synthetic generation, preprocessing, tokenisation, images, batching."""
