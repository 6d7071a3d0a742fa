"""The embedded driving world: procedural towns rendered with OpenGL, CARLA's sensors without a server.

Modules: `towns` (catalogue, road network, lane graph), `ground` (road/marking/sidewalk raster),
`scenery` (static objects), `geometry` (meshes), `world` (a built town, cached), `renderer`
(moderngl, one pass, three targets), `weather`, `lights`, `vehicles` (NPC IDM traffic),
`pedestrians`, `autopilot` (ego bicycle model and autopilot), `events`, `backend`
(`EmbeddedBackend`), `snapshot` (a picture of frames).
"""

from .towns import SPLITS

__all__ = ["SPLITS"]
