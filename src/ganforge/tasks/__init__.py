"""What is being learned: the task protocol and the tasks.

A task turns data into the explicit inputs of the discriminator and generator
phases and computes the generator's loss; the training step
(:mod:`ganforge.train.step`) owns everything else. See :mod:`ganforge.tasks.base`
for the protocol, :mod:`ganforge.tasks.generation` for image generation and
:mod:`ganforge.tasks.inpainting` for inpainting; :mod:`ganforge.train.tasks`
maps ``model.arch`` to a task.
"""
