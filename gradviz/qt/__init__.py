"""The desktop app: Qt views of the core's recording and stepper. The only package that imports Qt."""
