"""What `mitmdump -s addons/gws_recorder.py` loads: the gwsproxy recorder, options `gws_*`.

Usage: mitmdump -s addons/gws_recorder.py --mode reverse:http://GWS --set gws_capture=FILE
"""

from gwsproxy.record.addon import GwsRecorder

addons = [GwsRecorder()]
