"""Line framing, back-pressure and the codec: trial TestCases over fake transports."""
