"""Tools for studying how a model trains: loss landscapes along random or principal
directions (Li et al. 2018), trajectories in their PCA plane, and how closely one
learning rule's gradient follows another's."""

from ._landscape import (
    direction_between as direction_between,
    loss_line as loss_line,
    loss_surface as loss_surface,
    random_direction as random_direction,
)
from ._pca import (
    TrajectoryPCA as TrajectoryPCA,
    flatten_params as flatten_params,
    trajectory_grid as trajectory_grid,
    trajectory_pca as trajectory_pca,
    unflatten_params as unflatten_params,
)
from ._similarity import (
    GradientComparison as GradientComparison,
    SimilarityRecorder as SimilarityRecorder,
    cosine_similarity as cosine_similarity,
    gradient_similarity as gradient_similarity,
)
