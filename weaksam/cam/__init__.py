"""Stage A and B: class activation maps from a multi-label classifier, and their peak points."""

# The ``kind`` of a CAM store (weaksam.h5store). It lives here, not in the torch-importing
# extract module, so that readers of CAM stores (prompts, figures, report) stay light.
CAM_STORE_KIND = "cam"
