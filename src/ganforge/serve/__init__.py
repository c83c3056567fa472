"""``ganforge serve``: a local web page to sample from generators and inpaint images.

Needs the ``serve`` extra (Gradio). :mod:`ganforge.serve.handlers` holds the logic
(no web dependency); :mod:`ganforge.serve.app` builds the page.
"""

MAX_PIXELS = 1024 * 1024  # uploads larger than this are refused with a message
MAX_UPLOAD_MB = 20.0      # byte size limit, checked before decoding
