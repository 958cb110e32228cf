"""Weakly supervised object detection: WSDDN, OICR and MIST on proposals."""
